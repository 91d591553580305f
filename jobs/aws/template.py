#!/usr/bin/env python3
"""Reads jobs/aws/dynamo-etl.template.json the way CloudFormation would for one set of values.

    python3 jobs/aws/template.py state-machine DIALECT   # the definition as the stack creates it

Used by jobs/aws/check (the linters see the definition with its substitutions put in) and by
jobs/aws/rehearse (which registers the template's job definitions and state machine in moto).
It resolves the intrinsic functions the template uses, Ref, Fn::GetAtt and Fn::Sub, from a
dictionary of values: parameters, pseudo parameters (`AWS::Region`) and what each resource's Ref
or attribute returns (`JobQueue`, `JobRole.Arn`).
"""

import json
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
PATH = os.path.join(HERE, "dynamo-etl.template.json")
VARIABLE = re.compile(r"\$\{([A-Za-z0-9_:.]+)\}")


def load():
    with open(PATH) as f:
        return json.load(f)


def substitute(text, values):
    def one(m):
        if m.group(1) not in values:
            raise KeyError(f"no value for ${{{m.group(1)}}}")
        return str(values[m.group(1)])

    return VARIABLE.sub(one, text)


def resolve(node, values):
    """`node` with every Ref, Fn::GetAtt and Fn::Sub replaced by its value."""
    if isinstance(node, dict):
        if list(node) == ["Ref"]:
            return values[node["Ref"]]
        if list(node) == ["Fn::GetAtt"]:
            return values[".".join(node["Fn::GetAtt"])]
        if list(node) == ["Fn::Sub"]:
            body = node["Fn::Sub"]
            if isinstance(body, list):
                body, own = body
                values = {**values, **{k: resolve(v, values) for k, v in own.items()}}
            return substitute(body, values)
        unknown = [k for k in node if k.startswith("Fn::")]
        if unknown:
            raise ValueError(f"template.py does not resolve {unknown}")
        return {k: resolve(v, values) for k, v in node.items()}
    if isinstance(node, list):
        return [resolve(v, values) for v in node]
    return node


def api_casing(node, key=None):
    """A CloudFormation property tree in the casing of the service's API (`ContainerProperties`
    becomes `containerProperties`); free-form maps keep their keys."""
    if isinstance(node, dict):
        if key in ("Parameters", "Options", "Tags"):
            return dict(node)
        return {k[:1].lower() + k[1:]: api_casing(v, k) for k, v in node.items()}
    if isinstance(node, list):
        return [api_casing(v) for v in node]
    return node


def resources(template, kind):
    return {
        rid: r
        for rid, r in template["Resources"].items()
        if r["Type"] == kind
    }


def job_definitions(template, values):
    """The job definitions as RegisterJobDefinition takes them."""
    out = []
    for rid, r in resources(template, "AWS::Batch::JobDefinition").items():
        out.append(api_casing(resolve(r["Properties"], values)))
    return out


def state_machine(template, values):
    """The state machine's definition text, with its DefinitionSubstitutions put in."""
    (machine,) = resources(template, "AWS::StepFunctions::StateMachine").values()
    props = machine["Properties"]
    subs = {k: resolve(v, values) for k, v in props["DefinitionSubstitutions"].items()}
    return substitute(json.dumps(props["Definition"], indent=2), subs)


def schedules(template, values):
    return {
        rid: resolve(r["Properties"], values)
        for rid, r in resources(template, "AWS::Scheduler::Schedule").items()
    }


def sample_values(dialect, stack="dynamo-etl"):
    """Values for a sample stack (what jobs/aws/check lints)."""
    account, region = "123456789012", "eu-west-1"
    return {
        "AWS::AccountId": account,
        "AWS::Region": region,
        "AWS::StackName": stack,
        "Dialect": dialect,
        "Table": "orders",
        "Target": "dynamodb",
        "JobQueue": f"arn:aws:batch:{region}:{account}:job-queue/{stack}",
        "AlertTopic": f"arn:aws:sns:{region}:{account}:{stack}-alerts",
    }


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] != "state-machine":
        sys.exit("usage: template.py state-machine DIALECT")
    print(state_machine(load(), sample_values(sys.argv[2])))

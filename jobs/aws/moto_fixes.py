"""The fixes jobs/aws/rehearse needs in moto 5.2.5's Step Functions interpreter, all in one place.

Each patch first checks that moto still has the shape it was written against and stops the
rehearsal with a clear message when it does not: a newer moto may have fixed the bug (drop the
patch) or moved the code (adapt it). Nothing here changes what the state machine does; each patch
makes moto do what Step Functions does.
"""

import datetime
import inspect

import botocore.session

EXPECTED_MOTO = "5.2.5"


class MotoChanged(RuntimeError):
    pass


def _expect(condition, what):
    if not condition:
        raise MotoChanged(
            f"moto no longer looks as jobs/aws/moto_fixes.py expects: {what}. "
            f"Check whether moto fixed it, then adapt or drop the patch."
        )


def _is_noop(function):
    """Whether a method's body is only `pass` (moto's unimplemented hooks)."""
    lines = [
        line.strip()
        for line in inspect.getsource(function).splitlines()
        if line.strip() and not line.strip().startswith(("#", '"""'))
    ]
    return lines[-1] == "pass" and not any("return" in line for line in lines)


def _iso_start_time():
    """`$$.Execution.StartTime` is an ISO 8601 string in Step Functions, UTC with milliseconds
    (`2019-03-26T20:14:13.192Z` in the context object's example,
    https://docs.aws.amazon.com/step-functions/latest/dg/input-output-contextobject.html);
    moto hands the state machine a datetime, so `States.StringSplit` on it fails."""
    from moto.stepfunctions.parser.backend import execution_worker

    worker = execution_worker.ExecutionWorker
    original = worker._get_evaluation_environment
    _expect(
        "StartTime=self._evaluation_details.execution_details.start_time"
        in inspect.getsource(original),
        "ExecutionWorker._get_evaluation_environment passes start_time as StartTime",
    )

    def patched(self):
        env = original(self)
        execution = env.states.context_object.context_object_data["Execution"]
        start = execution["StartTime"]
        _expect(isinstance(start, datetime.datetime), f"StartTime is a datetime, not {start!r}")
        start = start.astimezone(datetime.timezone.utc)
        execution["StartTime"] = start.strftime("%Y-%m-%dT%H:%M:%S.") + f"{start.microsecond // 1000:03d}Z"
        return env

    worker._get_evaluation_environment = patched


def _shape_keys(value, shape, to_api):
    """Respells, in place, the member names of `shape` in `value`: as the API spells them
    (`to_api`, for a request) or as Step Functions hands them to the state machine (PascalCase,
    for a response); the keys of maps (a job's `parameters`, `tags`) are data and stay. In place,
    because moto keeps references into the response it normalises."""
    if shape is None:
        return
    if shape.type_name == "structure" and isinstance(value, dict):
        members = {name.lower(): (name, member) for name, member in shape.members.items()}
        for key in list(value):
            name, member = members.get(key.lower(), (key, None))
            if not to_api:
                name = name[:1].upper() + name[1:]
            item = value.pop(key)
            _shape_keys(item, member, to_api)
            value[name] = item
    elif shape.type_name == "list" and isinstance(value, list):
        for item in value:
            _shape_keys(item, shape.member, to_api)
    elif shape.type_name == "map" and isinstance(value, dict):
        for item in value.values():
            _shape_keys(item, shape.value, to_api)


def _batch_casing():
    """Step Functions takes a Batch task's parameters in PascalCase (`JobName`, `ArrayProperties`),
    for the optimized integration and the SDK one alike
    (https://docs.aws.amazon.com/step-functions/latest/dg/connect-batch.html,
    https://docs.aws.amazon.com/step-functions/latest/dg/supported-services-awssdk.html), and
    gives the job's description back in PascalCase (`Container.ExitCode`): no AWS page states or
    shows that half; failed .sync causes captured from real runs in public code do
    (`Attempts[].Container.ExitCode`, `StatusReason`). moto 5.2.5 leaves both hooks empty, so
    boto refuses `JobName` and a failed job's cause carries camelCase keys."""
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import (
        state_task_service,
        state_task_service_batch,
    )

    base = state_task_service.StateTaskService
    batch = state_task_service_batch.StateTaskServiceBatch
    _expect(_is_noop(base._normalise_parameters), "StateTaskService._normalise_parameters is empty")
    _expect(_is_noop(base._normalise_response), "StateTaskService._normalise_response is empty")
    for name in ("_normalise_parameters", "_normalise_response"):
        _expect(name not in batch.__dict__, f"StateTaskServiceBatch defines no {name}")
    model = botocore.session.get_session().get_service_model("batch")

    def operation(self, action):
        action = action or self._get_boto_service_action()
        return model.operation_model(
            next(op for op in model.operation_names if botocore.xform_name(op) == action)
        )

    def normalise_parameters(self, parameters, boto_service_name=None, service_action_name=None):
        if (boto_service_name or self._get_boto_service_name()) != "batch":
            return
        _shape_keys(parameters, operation(self, service_action_name).input_shape, to_api=True)

    def normalise_response(self, response, boto_service_name=None, service_action_name=None):
        if (boto_service_name or self._get_boto_service_name()) != "batch":
            return
        if not isinstance(response, dict):
            return
        _shape_keys(response, operation(self, service_action_name).output_shape, to_api=False)

    base._normalise_parameters = normalise_parameters
    base._normalise_response = normalise_response


def _wildcard_paths_give_arrays():
    """A path with a `[*]` wildcard gives an array in Step Functions, also when one element
    matches. Paths follow JsonPath syntax
    (https://docs.aws.amazon.com/step-functions/latest/dg/amazon-states-language-paths.html), but
    that page does not state the one-match case: it is JsonPath's rule for indefinite paths, not
    an AWS-documented one. moto 5.2.5 unwraps a single match when the wildcard is not the path's last step, so
    `$.JobSummaryList[*].Container.ExitCode` of one failed array child gave a number and
    `States.ArrayContains` on it failed the execution."""
    import importlib
    import re

    from moto.stepfunctions.parser.asl.utils import json_path

    original = json_path.extract_json
    _expect("value = matches[0].value" in inspect.getsource(original), "extract_json unwraps a single match")
    users = [
        "moto.stepfunctions.parser.asl.component.common.string.string_expression",
        "moto.stepfunctions.parser.asl.component.intrinsic.argument.argument",
        "moto.stepfunctions.parser.asl.eval.states",
    ]
    wildcard = re.compile(r"\[\*\]")

    def patched(path, data):
        value = original(path, data)
        if wildcard.search(path) and not isinstance(value, list):
            return [value]
        return value

    json_path.extract_json = patched
    for name in users:
        module = importlib.import_module(name)
        _expect(getattr(module, "extract_json", None) is original, f"{name} uses json_path.extract_json")
        module.extract_json = patched


def _export_arns():
    """DynamoDB names an export `<table ARN>/export/<id>` (the manifest's `exportArn` example,
    https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/S3DataExport.Output.html;
    API_ExportDescription.html gives no format);
    moto 5.2.5 writes `…:table/<table ARN>/import/<id>`, which dynamo-etl rightly refuses."""
    from moto.dynamodb.models import table_export

    init = table_export.TableExport.__init__
    _expect("/import/" in inspect.getsource(init), "TableExport names exports …/import/<id>")

    def patched(self, *args, **kwargs):
        init(self, *args, **kwargs)
        self.arn = f"{self.table.table_arn}/export/{self.arn.rsplit('/', 1)[1]}"

    table_export.TableExport.__init__ = patched


def _incremental_export_specification():
    """DynamoDB keeps an incremental export's `IncrementalExportSpecification` (its window and
    view) and DescribeExport answers it
    (https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_ExportDescription.html);
    moto 5.2.5 drops it from the request, so `increment` could not learn the window of the
    export it started, and the rehearsal's stand-in for DynamoDB's writer (`hourly-increment`)
    could not know which changes to write. Kept on the export as `incremental_specification`."""
    import threading

    from moto.dynamodb import responses
    from moto.dynamodb.models import table_export

    handler = responses.DynamoHandler.export_table_to_point_in_time
    _expect("IncrementalExportSpecification" not in inspect.getsource(handler),
            "export_table_to_point_in_time ignores IncrementalExportSpecification")
    _expect("IncrementalExportSpecification" not in inspect.getsource(table_export.TableExport),
            "TableExport.response gives no IncrementalExportSpecification")
    asked = threading.local()

    def patched_handler(self):
        asked.spec = self.body.get("IncrementalExportSpecification")
        try:
            return handler(self)
        finally:
            asked.spec = None

    init = table_export.TableExport.__init__
    response = table_export.TableExport.response

    def patched_init(self, *args, **kwargs):
        init(self, *args, **kwargs)
        spec = getattr(asked, "spec", None)
        if spec is not None and self.export_type == "INCREMENTAL_EXPORT":
            self.incremental_specification = {"ExportViewType": "NEW_AND_OLD_IMAGES", **spec}
        else:
            self.incremental_specification = None

    def patched_response(self):
        out = response(self)
        if self.incremental_specification is not None:
            out["IncrementalExportSpecification"] = self.incremental_specification
        return out

    responses.DynamoHandler.export_table_to_point_in_time = patched_handler
    table_export.TableExport.__init__ = patched_init
    table_export.TableExport.response = patched_response


def apply():
    import moto

    _expect(moto.__version__ == EXPECTED_MOTO, f"version {EXPECTED_MOTO}, not {moto.__version__}")
    _iso_start_time()
    _batch_casing()
    _wildcard_paths_give_arrays()
    _export_arns()
    _incremental_export_specification()

//! The deployable under jobs/aws, one CloudFormation template, is of the right shape: every
//! command its job definitions run exists in this CLI with those arguments and environment (parsed
//! by the real argument parser), the state machine submits existing job definitions with the
//! parameters they take and never submits again a job that exited 2, the parameters hold what the
//! CLI takes, and the job role's IAM policy grants exactly the actions of the AWS SDK calls the
//! code makes. jobs/aws/rehearse runs the same template end to end.
use crate::cli;
use clap::{CommandFactory, Parser, ValueEnum};
use cli::flags::DialectArg;
use cli::Cli;
use dynamo_etl::warehouse::{DialectName, WarehouseUrl};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn root() -> PathBuf {
    repo().join("jobs/aws")
}

/// The CloudFormation template, the one deployable: every job definition, the state machine, the
/// schedules and the roles' policies are read from it.
fn template() -> Value {
    let path = root().join("dynamo-etl.template.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// `value` with the template's intrinsic functions written as the `${Name}` text `Fn::Sub` uses:
/// `{"Ref": "Table"}` becomes `${Table}`, `{"Fn::GetAtt": ["JobRole", "Arn"]}` `${JobRole.Arn}`,
/// and a `Fn::Sub` its string (with its own variables put in). `fill` then puts in sample values.
fn symbolic(value: &Value) -> Value {
    match value {
        Value::Object(map) if map.len() == 1 && map.contains_key("Ref") => {
            json!(format!(
                "${{{}}}",
                map["Ref"].as_str().expect("Ref names a string")
            ))
        }
        Value::Object(map) if map.len() == 1 && map.contains_key("Fn::GetAtt") => {
            let parts = map["Fn::GetAtt"]
                .as_array()
                .expect("Fn::GetAtt takes a list");
            json!(format!(
                "${{{}.{}}}",
                parts[0].as_str().unwrap(),
                parts[1].as_str().unwrap()
            ))
        }
        Value::Object(map) if map.len() == 1 && map.contains_key("Fn::Sub") => {
            match &map["Fn::Sub"] {
                Value::String(text) => json!(text),
                Value::Array(parts) => {
                    let mut text = parts[0].as_str().unwrap().to_string();
                    for (name, v) in parts[1].as_object().unwrap() {
                        let v = symbolic(v);
                        text = text.replace(&format!("${{{name}}}"), v.as_str().unwrap());
                    }
                    json!(text)
                }
                other => panic!("Fn::Sub of {other}"),
            }
        }
        Value::Object(map) => {
            assert!(
                !map.keys().any(|k| k.starts_with("Fn::")),
                "this test reads Ref, Fn::Sub and Fn::GetAtt only: {value}"
            );
            Value::Object(map.iter().map(|(k, v)| (k.clone(), symbolic(v))).collect())
        }
        Value::Array(items) => Value::Array(items.iter().map(symbolic).collect()),
        other => other.clone(),
    }
}

/// The template's resources of one type, by logical id, intrinsic functions written as `${Name}`.
fn resources(kind: &str) -> BTreeMap<String, Value> {
    let t = template();
    let all = t["Resources"].as_object().expect("Resources");
    all.iter()
        .filter(|(_, r)| r["Type"] == kind)
        .map(|(id, r)| (id.clone(), symbolic(&r["Properties"])))
        .collect()
}

/// A CloudFormation property tree in the casing of the service's API: `ContainerProperties`
/// becomes `containerProperties`. The values of the free-form maps (`Parameters`, a log driver's
/// `Options`, `Tags`) keep their keys, which are names, not properties.
fn api_casing(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let mut chars = k.chars();
                    let first = chars.next().unwrap().to_ascii_lowercase();
                    let key = std::iter::once(first).chain(chars).collect::<String>();
                    let v = if ["Parameters", "Options", "Tags"].contains(&k.as_str()) {
                        v.clone()
                    } else {
                        api_casing(v)
                    };
                    (key, v)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(api_casing).collect()),
        other => other.clone(),
    }
}

/// The dialects `Dialect` may name: exactly the CLI's `--dialect` values.
const DIALECTS: [&str; 2] = ["redshift", "postgres"];

/// The value a deployment would have for a `${NAME}`: a template parameter, a pseudo parameter, or
/// what a resource's `Ref` or attribute returns, for a sample stack named `dynamo-etl`.
fn placeholder_sample(name: &str, dialect: &str) -> String {
    match name {
        "AWS::AccountId" => "123456789012",
        "AWS::Region" => "eu-west-1",
        "AWS::StackName" | "StackName" => "dynamo-etl",
        "Repository.RepositoryUri" => "123456789012.dkr.ecr.eu-west-1.amazonaws.com/dynamo-etl",
        "Repository.Arn" => "arn:aws:ecr:eu-west-1:123456789012:repository/dynamo-etl",
        "ImageTag" => "3f2a9c1",
        "StagingBucket" => "dynamo-etl-stagingbucket-1a2b3c4d5e6f",
        "Prefix" => "dynamo-etl",
        "Table" => "orders",
        "Target" => "dynamodb",
        "JobQueue" => "arn:aws:batch:eu-west-1:123456789012:job-queue/dynamo-etl",
        "MaxReadUnits" => "400",
        "WarehouseSecretArn" => {
            "arn:aws:secretsmanager:eu-west-1:123456789012:secret:dynamo-etl/warehouse-url-AbCdEf"
        }
        "AlertTopic" => "arn:aws:sns:eu-west-1:123456789012:dynamo-etl-alerts",
        "GrantSelectTo" => "group:analysts,role:bi",
        "Dialect" => dialect,
        "RedshiftClusterId" => "etl-cluster",
        "RedshiftDatabase" => "warehouse",
        "RedshiftWorkgroupId" => "0c1f2e3d-4b5a-6978-8a9b-0c1d2e3f4a5b",
        "NightlySource" => "scan",
        "LogGroup" => "/aws/batch/dynamo-etl",
        "StateMachine" => "arn:aws:states:eu-west-1:123456789012:stateMachine:dynamo-etl-nightly",
        "JobRole.Arn" => "arn:aws:iam::123456789012:role/dynamo-etl-JobRole-AbC",
        "ExecutionRole.Arn" => "arn:aws:iam::123456789012:role/dynamo-etl-ExecutionRole-AbC",
        "RedshiftCopyRole.Arn" => "arn:aws:iam::123456789012:role/dynamo-etl-RedshiftCopyRole-AbC",
        other => panic!("no sample value for ${{{other}}}; add one to this test"),
    }
    .to_string()
}

/// `text` with every `${NAME}` replaced by its sample value.
fn fill(text: &str, dialect: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find('}').expect("unclosed ${") + start;
        out.push_str(&placeholder_sample(&rest[start + 2..end], dialect));
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

/// `value` with every `${NAME}` in its strings replaced by its sample value.
fn filled(value: &Value, dialect: &str) -> Value {
    serde_json::from_str(&fill(&value.to_string(), dialect)).unwrap()
}

/// Every `${NAME}` placeholder in `text`.
fn placeholders(text: &str) -> BTreeSet<String> {
    text.match_indices("${")
        .map(|(i, _)| {
            let end = text[i..].find('}').unwrap() + i;
            text[i + 2..end].to_string()
        })
        .collect()
}

/// Sample values for Batch `Ref::` parameters without a default.
fn sample(parameter: &str) -> &'static str {
    match parameter {
        "runId" => "2026-11-21-nightly",
        "totalSegments" => "16",
        "segment" => "3",
        "segments" => "8",
        "concurrency" => "4",
        other => panic!("no sample value for Batch parameter {other}; add one to this test"),
    }
}

/// One job definition as Batch would run it.
struct Job {
    def: Value,
    /// The command with `Ref::` parameters resolved: given ones first, then defaults, then samples.
    command: Vec<String>,
    /// The `Ref::` parameters the command uses.
    refs: BTreeSet<String>,
    /// The parameters with a default in the definition.
    defaults: BTreeMap<String, String>,
}

impl Job {
    fn resolve(def: &Value, given: &BTreeMap<String, String>) -> Vec<String> {
        let defaults = def["parameters"].as_object().cloned().unwrap_or_default();
        def["containerProperties"]["command"]
            .as_array()
            .expect("command")
            .iter()
            .map(|a| {
                let a = a.as_str().unwrap();
                match a.strip_prefix("Ref::") {
                    Some(p) => given
                        .get(p)
                        .cloned()
                        .or_else(|| defaults.get(p).and_then(Value::as_str).map(str::to_string))
                        .unwrap_or_else(|| sample(p).to_string()),
                    None => a.to_string(),
                }
            })
            .collect()
    }

    /// The environment, placeholders filled in for `dialect`.
    fn env(&self, dialect: &str) -> Vec<(String, String)> {
        self.def["containerProperties"]["environment"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| {
                let value = e["value"].as_str().unwrap_or_default();
                (
                    e["name"].as_str().unwrap().to_string(),
                    fill(value, dialect),
                )
            })
            .collect()
    }

    /// The raw value of an environment variable (placeholders left in).
    fn env_raw(&self, name: &str) -> Option<String> {
        self.def["containerProperties"]["environment"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|e| e["name"] == name)
            .and_then(|e| e["value"].as_str())
            .map(str::to_string)
    }

    fn has_warehouse_secret(&self) -> bool {
        self.def["containerProperties"]["secrets"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|s| s["name"] == "ETL_WAREHOUSE_URL")
    }

    /// An array child takes its segment from Batch (`--segment auto`).
    fn is_array_child(&self) -> bool {
        self.command
            .windows(2)
            .any(|w| w[0] == "--segment" && w[1] == "auto")
    }
}

/// The job definitions by name (the stack's sample name put in), in the API's casing.
fn job_definitions() -> BTreeMap<String, Job> {
    let mut out = BTreeMap::new();
    for (id, props) in resources("AWS::Batch::JobDefinition") {
        let def = api_casing(&props);
        let name = fill(
            def["jobDefinitionName"]
                .as_str()
                .unwrap_or_else(|| panic!("{id}: no JobDefinitionName")),
            "redshift",
        );
        assert_eq!(def["type"], "container", "{name}");
        let refs = def["containerProperties"]["command"]
            .as_array()
            .unwrap_or_else(|| panic!("{name}: no command"))
            .iter()
            .filter_map(|a| a.as_str()?.strip_prefix("Ref::").map(str::to_string))
            .collect();
        let defaults = def["parameters"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
            .collect();
        let command = Job::resolve(&def, &BTreeMap::new());
        out.insert(
            name,
            Job {
                def,
                command,
                refs,
                defaults,
            },
        );
    }
    assert!(!out.is_empty(), "no job definitions in the template");
    out
}

/// Turns a job's environment into the flags that read it, the way the binary would see it, without
/// touching this process's environment (other tests spawn the binary and would inherit it).
/// Returns the flags and the variables no flag of the command reads.
fn env_as_flags(command: &[String], env: &[(String, String)]) -> (Vec<String>, Vec<String>) {
    let root = Cli::command();
    let mut sub = root
        .find_subcommand(&command[0])
        .unwrap_or_else(|| panic!("no subcommand {}", command[0]));
    // A command with subcommands of its own (`export start`): the flags are the innermost one's.
    for word in &command[1..] {
        match sub.find_subcommand(word) {
            Some(inner) => sub = inner,
            None => break,
        }
    }
    let mut flags = Vec::new();
    let mut unread = Vec::new();
    for (name, value) in env {
        let arg = sub
            .get_arguments()
            .chain(root.get_arguments())
            .find(|a| a.get_env().is_some_and(|e| e == name.as_str()));
        match arg {
            None => unread.push(name.clone()),
            Some(arg) => {
                let long = arg
                    .get_long()
                    .unwrap_or_else(|| panic!("{name} is read by a positional argument"));
                if arg.get_action().takes_values() {
                    flags.push(format!("--{long}={value}"));
                } else if ["true", "1", "yes", "on"].contains(&value.as_str()) {
                    flags.push(format!("--{long}"));
                }
            }
        }
    }
    (flags, unread)
}

/// Parses `dynamo-etl <command>` run with `env`, the way Batch starts the container.
fn parse_job(name: &str, command: &[String], env: &[(String, String)]) -> Cli {
    let (flags, unread) = env_as_flags(command, env);
    assert!(
        unread.is_empty(),
        "{name}: `dynamo-etl {}` reads no {unread:?}; a misspelt or stale variable is silently ignored",
        command[0]
    );
    let argv = std::iter::once("dynamo-etl".to_string())
        .chain(command.iter().cloned())
        .chain(flags.iter().cloned());
    Cli::try_parse_from(argv).unwrap_or_else(|e| {
        panic!(
            "{name}: `dynamo-etl {} {}` is not a valid command line:\n{e}",
            command.join(" "),
            flags.join(" ")
        )
    })
}

#[test]
fn every_batch_command_parses_with_the_cli() {
    let jobs = job_definitions();
    for phase in [
        "plan",
        "export start",
        "export wait",
        "segment",
        "prepare",
        "upload",
        "replace",
        "infer-schema",
    ] {
        let words: Vec<&str> = phase.split(' ').collect();
        assert!(
            jobs.values()
                .any(|j| j.command.len() >= words.len() && j.command[..words.len()] == words),
            "no job definition runs `{phase}`"
        );
    }
    for dialect in DIALECTS {
        for (name, job) in &jobs {
            let cli = parse_job(name, &job.command, &job.env(dialect));
            if let cli::Command::Replace(args) = &cli.command {
                assert_eq!(
                    args.warehouse.grant_select_to.len(),
                    2,
                    "{name}: the sample GRANT_SELECT_TO names two grantees"
                );
            }
        }
    }
}

/// The definitions use today's spellings: none of the flags or variables the CLI still reads
/// for one release, with a warning, after a rename.
#[test]
fn no_job_uses_a_deprecated_spelling() {
    use cli::deprecated::{RENAMED_FLAGS, RENAMED_VARIABLES};
    let mut old = Vec::new();
    for (name, job) in job_definitions() {
        let env: Vec<String> = job.env("redshift").into_iter().map(|(k, _)| k).collect();
        for f in RENAMED_FLAGS.iter().filter(|f| job.command[0] == f.command) {
            if job.command.iter().any(|a| a == f.old_flag) {
                old.push(format!("{name}: {} (now {})", f.old_flag, f.new_flag));
            }
            if env.iter().any(|e| e == f.old_env) {
                old.push(format!("{name}: {} (now {})", f.old_env, f.new_env));
            }
        }
        for v in RENAMED_VARIABLES {
            if env.iter().any(|e| e == v.old) {
                old.push(format!("{name}: {} (now {})", v.old, v.new));
            }
        }
    }
    assert!(old.is_empty(), "{old:#?}");
}

#[test]
fn dialect_values_are_the_clis() {
    for d in DIALECTS {
        assert!(DialectArg::from_str(d, false).is_ok(), "--dialect {d}");
    }
    let names: BTreeSet<&str> = DialectName::ALL.iter().map(|d| d.name()).collect();
    assert_eq!(names, DIALECTS.into_iter().collect());
}

#[test]
fn array_jobs_take_their_segment_from_batch() {
    for (name, job) in job_definitions() {
        let command = &job.command;
        if !["segment", "upload"].contains(&command[0].as_str()) {
            continue;
        }
        if command.iter().any(|a| a == "--all-segments") {
            assert!(
                !command.iter().any(|a| a == "--segment"),
                "{name}: --all-segments loads every segment; it takes no --segment"
            );
            continue;
        }
        let i = command
            .iter()
            .position(|a| a == "--segment")
            .unwrap_or_else(|| panic!("{name}: no --segment"));
        assert_eq!(
            command[i + 1],
            "auto",
            "{name}: array children must use --segment auto by default"
        );
    }
}

/// Settings each job needs from its environment to do its work right.
#[test]
fn each_job_gets_the_settings_its_phase_needs() {
    let jobs = job_definitions();
    let mut replace_jobs = 0;
    for (name, job) in &jobs {
        let phase = job.command[0].as_str();
        if phase == "replace" {
            // The swap replaces the tables, and grants with them: without this every reader loses
            // SELECT at the first swap. Only the swap grants (prepare and upload write staging,
            // which no reader uses), so no other phase needs it.
            replace_jobs += 1;
            assert_eq!(
                job.env_raw("ETL_GRANT_SELECT_TO").as_deref(),
                Some("${GrantSelectTo}"),
                "{name}: the swap must re-grant SELECT to the readers"
            );
        }
        if ["plan", "segment"].contains(&phase) {
            // No warehouse URL here, so the dialect parts are shaped for comes from DIALECT, the
            // same setting that picks phase 3's mode in the state machine.
            assert!(!job.has_warehouse_secret(), "{name}: needs no warehouse");
            assert_eq!(
                job.env_raw("ETL_DIALECT").as_deref(),
                Some("${Dialect}"),
                "{name}: plan and phase 1 learn the dialect from DIALECT"
            );
        }
        if phase == "export" {
            // The export and its note of the ARN go to the staging area; no warehouse is needed.
            assert!(!job.has_warehouse_secret(), "{name}: needs no warehouse");
            for var in ["ETL_BUCKET", "ETL_PREFIX", "ETL_REGION"] {
                assert!(job.env_raw(var).is_some(), "{name}: needs {var}");
            }
            if job.command[1] == "start" {
                assert_eq!(
                    job.env_raw("ETL_TABLE").as_deref(),
                    Some("${Table}"),
                    "{name}: exports the deployment's table"
                );
            }
        }
        if job.has_warehouse_secret() {
            // The secret's scheme (redshift:// or postgres://) names the dialect; a second
            // setting could only contradict it.
            assert_eq!(
                job.env_raw("ETL_DIALECT"),
                None,
                "{name}: the warehouse URL's scheme decides the dialect"
            );
        }
    }
    assert_eq!(replace_jobs, 1);
}

#[test]
fn retry_strategies_retry_transient_exits_and_never_data_errors() {
    for (name, job) in job_definitions() {
        let def = &job.def;
        let rules = def["retryStrategy"]["evaluateOnExit"]
            .as_array()
            .unwrap_or_else(|| panic!("{name}: no evaluateOnExit"));
        let action_for = |code: &str| {
            rules
                .iter()
                .find(|r| {
                    r["onExitCode"]
                        .as_str()
                        .is_some_and(|c| c == code || c == "*")
                })
                .and_then(|r| r["action"].as_str())
                .map(str::to_ascii_uppercase)
        };
        assert_eq!(
            action_for("2").as_deref(),
            Some("EXIT"),
            "{name}: exit 2 (data/config error) must not be retried"
        );
        assert_eq!(
            action_for("1").as_deref(),
            Some("RETRY"),
            "{name}: exit 1 (needs a retry) must be retried"
        );
        assert!(
            rules.iter().any(|r| r["onStatusReason"]
                .as_str()
                .is_some_and(|s| s.starts_with("Host EC2"))
                && r["action"] == "RETRY"),
            "{name}: host/spot termination must be retried"
        );
        let attempts = def["retryStrategy"]["attempts"].as_u64().unwrap_or(0);
        assert!((2..=10).contains(&attempts), "{name}: attempts {attempts}");
        assert!(
            def["timeout"]["attemptDurationSeconds"]
                .as_u64()
                .is_some_and(|s| s >= 60),
            "{name}: needs a timeout"
        );
        assert!(
            job.env_raw("ETL_WAREHOUSE_URL").is_none(),
            "{name}: the warehouse URL holds a password and must come from `secrets`, not `environment`"
        );
    }
}

fn timeout_of(jobs: &BTreeMap<String, Job>, name: &str) -> u64 {
    jobs[name].def["timeout"]["attemptDurationSeconds"]
        .as_u64()
        .unwrap()
}

/// Phase 3's two modes wait for different things: an array child for its own segment, the
/// all-segments job for every segment, one after another.
#[test]
fn phase_3_timeouts_match_what_each_mode_waits_for() {
    let jobs = job_definitions();
    let child = timeout_of(&jobs, "dynamo-etl-phase3-upload");
    let all = timeout_of(&jobs, "dynamo-etl-phase3-upload-all");
    assert!(
        all >= 2 * child,
        "the all-segments job loads the whole table ({all} s); a child only one segment ({child} s)"
    );
    assert!(
        all >= timeout_of(&jobs, "dynamo-etl-phase1-segment"),
        "loading the whole table gets at least the time one segment's scan gets"
    );
}

/// The state machine's definition as the stack creates it: the template's `Definition` with its
/// `DefinitionSubstitutions` put in, written as `${Name}` (see `symbolic`).
fn state_machine_symbolic() -> Value {
    let machines = resources("AWS::StepFunctions::StateMachine");
    assert_eq!(machines.len(), 1, "one state machine");
    let props = machines.into_values().next().unwrap();
    let mut text = props["Definition"].to_string();
    for (name, v) in props["DefinitionSubstitutions"].as_object().unwrap() {
        text = text.replace(&format!("${{{name}}}"), v.as_str().unwrap());
    }
    let unknown: Vec<String> = placeholders(&text)
        .into_iter()
        .filter(|p| !p.contains("::") && !props["DefinitionSubstitutions"][p].is_string())
        .collect();
    assert!(
        unknown.is_empty(),
        "the definition uses {unknown:?}, which DefinitionSubstitutions lacks"
    );
    serde_json::from_str(&text).unwrap()
}

/// The state machine's definition with the sample stack's values put in.
fn state_machine() -> Value {
    filled(&state_machine_symbolic(), "redshift")
}

/// Every state of the machine by name, those inside a Parallel state's branches included (state
/// names are unique across the whole machine).
fn all_states(asl: &Value) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    for (name, state) in asl["States"].as_object().expect("States") {
        for branch in state["Branches"].as_array().into_iter().flatten() {
            for (inner, s) in all_states(branch) {
                assert!(
                    out.insert(inner.clone(), s).is_none(),
                    "two states named {inner}"
                );
            }
        }
        assert!(
            out.insert(name.clone(), state.clone()).is_none(),
            "two states named {name}"
        );
    }
    out
}

/// The value at a JSONPath of the simple `$.a.b` form.
fn at<'a>(input: &'a Value, path: &str) -> &'a Value {
    let rest = path
        .strip_prefix("$.")
        .unwrap_or_else(|| panic!("path {path}"));
    rest.split('.').fold(input, |v, k| &v[k])
}

/// Whether a Choice rule matches `input` (the operators the state machine uses).
fn matches(rule: &Value, input: &Value) -> bool {
    if let Some(all) = rule["And"].as_array() {
        return all.iter().all(|r| matches(r, input));
    }
    if let Some(any) = rule["Or"].as_array() {
        return any.iter().any(|r| matches(r, input));
    }
    if rule["Not"].is_object() {
        return !matches(&rule["Not"], input);
    }
    let value = at(input, rule["Variable"].as_str().expect("Variable"));
    let ops: Vec<(&String, &Value)> = rule
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| !["Variable", "Next"].contains(&k.as_str()))
        .collect();
    assert_eq!(ops.len(), 1, "one operator per rule: {rule}");
    let (op, expected) = ops[0];
    match op.as_str() {
        "StringEquals" => value.as_str() == expected.as_str(),
        "IsString" => value.is_string() == expected.as_bool().unwrap(),
        "IsNumeric" => value.is_number() == expected.as_bool().unwrap(),
        "NumericGreaterThanEquals" => value
            .as_f64()
            .is_some_and(|v| v >= expected.as_f64().unwrap()),
        "NumericLessThanEquals" => value
            .as_f64()
            .is_some_and(|v| v <= expected.as_f64().unwrap()),
        other => panic!("this test does not evaluate Choice operator {other}; add it"),
    }
}

/// Follows the state machine from its start on the path a run takes when every task succeeds,
/// with `input` as the state data after the input was merged. Returns the task states visited (those
/// inside a Parallel state's branch too) and the state it ends in.
fn walk(asl: &Value, input: &Value) -> (Vec<String>, String) {
    let states = asl["States"].as_object().expect("States");
    let mut current = asl["StartAt"].as_str().unwrap().to_string();
    let mut tasks = Vec::new();
    let mut seen = BTreeSet::new();
    loop {
        assert!(seen.insert(current.clone()), "the run loops at {current}");
        let state = states
            .get(&current)
            .unwrap_or_else(|| panic!("no state {current}"));
        let next = match state["Type"].as_str().unwrap() {
            "Choice" => state["Choices"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| matches(c, input))
                .and_then(|c| c["Next"].as_str())
                .or(state["Default"].as_str()),
            "Task" => {
                tasks.push(current.clone());
                state["Next"].as_str()
            }
            "Parallel" => {
                for branch in state["Branches"].as_array().unwrap() {
                    let (inner, end) = walk(branch, input);
                    assert_eq!(
                        branch["States"][&end]["End"], true,
                        "{current}: a branch whose tasks succeed ends at its end, not at {end}"
                    );
                    tasks.extend(inner);
                }
                state["Next"].as_str()
            }
            "Succeed" | "Fail" => None,
            _ => state["Next"].as_str(),
        };
        match next {
            Some(n) => current = n.to_string(),
            None => return (tasks, current),
        }
    }
}

/// The job definition a Batch task state submits, if it is one.
fn submitted(state: &Value) -> Option<(String, &Value)> {
    if !state["Resource"]
        .as_str()
        .is_some_and(|r| r.contains("batch:submitJob"))
    {
        return None;
    }
    let params = if state["Parameters"].is_object() {
        &state["Parameters"]
    } else {
        &state["Arguments"]
    };
    let definition = params["JobDefinition"].as_str().expect("JobDefinition");
    let name = definition.rsplit('/').next().unwrap().split(':').next();
    Some((name.unwrap().to_string(), params))
}

/// The Batch errors Step Functions may report when SubmitJob itself fails for a transient reason.
/// The Batch API lists ClientException and ServerException for SubmitJob
/// (https://docs.aws.amazon.com/batch/latest/APIReference/API_SubmitJob.html), throttling answers
/// TooManyRequestsException (https://repost.aws/knowledge-center/aws-batch-requests-error), and
/// Step Functions names service errors `<Service>.<Error>`
/// (https://docs.aws.amazon.com/step-functions/latest/dg/supported-services-awssdk.html);
/// AWSBatchException is what the integration reports in practice (no AWS page names it).
const BATCH_TRANSIENT: [&str; 3] = [
    "Batch.AWSBatchException",
    "Batch.TooManyRequestsException",
    "Batch.ServerException",
];

#[test]
fn the_state_machine_runs_the_phases_in_order_with_existing_job_definitions() {
    let asl = state_machine();
    let jobs = job_definitions();
    let states = all_states(&asl);
    let names: BTreeSet<&String> = states.keys().collect();
    for (name, state) in &states {
        for key in ["Next", "Default"] {
            if let Some(n) = state[key].as_str() {
                assert!(names.contains(&n.to_string()), "{name}.{key} -> {n}");
            }
        }
        for c in state["Choices"]
            .as_array()
            .into_iter()
            .flatten()
            .chain(state["Catch"].as_array().into_iter().flatten())
        {
            let n = c["Next"].as_str().unwrap();
            assert!(
                names.contains(&n.to_string()),
                "{name} -> unknown state {n}"
            );
        }
    }
    // The dialect is the stack's parameter, outside what the execution input merges.
    assert_eq!(
        state_machine_symbolic()["States"]["MergeInput"]["Parameters"]["dialect"],
        "${Dialect}",
        "MergeInput sets $.dialect from the Dialect parameter"
    );
    assert!(asl["States"]["Configure"]["Parameters"]["defaults"]["dialect"].is_null());

    let upload_job = |dialect: &str| match dialect {
        "redshift" => "dynamo-etl-phase3-upload-all",
        _ => "dynamo-etl-phase3-upload",
    };
    let phases = ["plan", "segment", "prepare", "upload", "replace"];
    for dialect in DIALECTS {
        for (from, start_at) in phases.iter().enumerate() {
            let input = json!({
                "config": {"runId": sample("runId"), "totalSegments": 16, "startAt": start_at,
                           "source": "scan"},
                "dialect": dialect,
            });
            let (tasks, end) = walk(&asl, &input);
            assert_eq!(end, "Done", "{dialect}, startAt {start_at}");
            let submitted: Vec<(String, Vec<String>)> = tasks
                .iter()
                .map(|t| {
                    let (job, _) = submitted(&states[t.as_str()]).expect("a Batch task");
                    let command = &jobs
                        .get(&job)
                        .unwrap_or_else(|| panic!("{t} submits unknown job definition {job}"))
                        .command;
                    (job, command.clone())
                })
                .collect();
            let order: Vec<&str> = submitted.iter().map(|(_, c)| c[0].as_str()).collect();
            assert_eq!(order, phases[from..], "{dialect}, startAt {start_at}");
            if let Some((job, _)) = submitted.iter().find(|(_, c)| c[0] == "upload") {
                assert_eq!(job, upload_job(dialect), "{dialect}: phase 3 mode");
            }
        }
        // An input the state machine refuses never reaches a job.
        let bad = json!({"config": {"runId": "r", "totalSegments": 1, "startAt": "plan",
                                    "source": "scan"},
                         "dialect": dialect});
        assert_eq!(walk(&asl, &bad), (vec![], "InvalidInput".to_string()));
    }
    let unknown = json!({"config": {"runId": "r", "totalSegments": 16, "startAt": "upload",
                                    "source": "scan"},
                         "dialect": "mysql"});
    assert_eq!(walk(&asl, &unknown), (vec![], "InvalidDialect".to_string()));
}

#[test]
fn batch_tasks_pass_the_parameters_their_job_definitions_take() {
    let asl = state_machine();
    let jobs = job_definitions();
    let mut tasks = 0;
    for (name, state) in &all_states(&asl) {
        let Some((job_name, params)) = submitted(state) else {
            continue;
        };
        tasks += 1;
        let job = &jobs[&job_name];
        assert!(
            state["Catch"].is_array(),
            "{name}: a failed phase must be caught and reported"
        );
        assert_eq!(
            params["JobQueue"],
            fill("${JobQueue}", "redshift"),
            "{name}"
        );
        assert_eq!(params["JobName"], job_name.as_str(), "{name}");
        let retried: BTreeSet<&str> = state["Retry"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|r| r["ErrorEquals"].as_array().unwrap())
            .filter_map(Value::as_str)
            .collect();
        for error in BATCH_TRANSIENT {
            assert!(retried.contains(error), "{name} does not retry {error}");
        }
        let passed: BTreeMap<String, &Value> = params["Parameters"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| (k.trim_end_matches(".$").to_string(), v))
            .collect();
        for key in passed.keys() {
            assert!(
                job.refs.contains(key),
                "{name} passes {key}, which {job_name}'s command does not use"
            );
        }
        for r in &job.refs {
            assert!(
                passed.contains_key(r) || job.defaults.contains_key(r),
                "{name} does not pass {r}, which {job_name} needs"
            );
        }
        let array = &params["ArrayProperties"];
        assert_eq!(
            array.is_object(),
            job.is_array_child(),
            "{name}: an array job exactly when {job_name}'s children take --segment auto"
        );
        if array.is_object() {
            assert_eq!(array["Size.$"], "$.config.totalSegments", "{name}");
            assert_eq!(passed["segment"], "auto", "{name}");
        }
        if let Some(total) = passed.get("totalSegments") {
            assert_eq!(
                **total, "States.Format('{}', $.config.totalSegments)",
                "{name}: the scan's total segments is the array size"
            );
        }
    }
    assert_eq!(
        tasks, 9,
        "export start, export wait, plan from the export, plan, phase 1, prepare, two phase 3 modes, replace"
    );
}

/// The retry rules that submit task `task`'s job again after the job failed (rather than after
/// its submission failed): the task's own, and those of the Parallel state whose branch holds it.
fn whole_job_retries(asl: &Value, task: &str) -> Vec<Value> {
    let mut rules: Vec<Value> = all_states(asl)[task]["Retry"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for state in asl["States"].as_object().unwrap().values() {
        let holds = state["Branches"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|b| all_states(b).contains_key(task));
        if holds {
            rules.extend(state["Retry"].as_array().cloned().unwrap_or_default());
        }
    }
    rules
        .into_iter()
        .filter(|r| {
            r["ErrorEquals"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| !BATCH_TRANSIENT.contains(&e.as_str().unwrap()))
        })
        .collect()
}

/// The state machine's own retries of a failed job (phase 3 twice, replace once) are still
/// possible after every phase before them ran to its timeout: the timeouts of one success path,
/// each phase times its whole-job retries, plus the waits between them, fit in the execution's
/// timeout. (Batch's own retries of an attempt are not counted: a whole night of those ends in the
/// execution timeout, which is what it is for.)
#[test]
fn the_state_machines_retries_fit_in_the_execution_timeout() {
    let asl = state_machine();
    let jobs = job_definitions();
    let limit = asl["TimeoutSeconds"].as_u64().expect("TimeoutSeconds");
    for dialect in DIALECTS {
        let input = json!({"config": {"runId": "r", "totalSegments": 16, "startAt": "plan",
                                      "source": "scan"},
                           "dialect": dialect});
        let (tasks, _) = walk(&asl, &input);
        let mut total = 0.0;
        for t in &tasks {
            let state = &all_states(&asl)[t];
            let timeout = timeout_of(&jobs, &submitted(state).unwrap().0) as f64;
            total += timeout;
            for rule in whole_job_retries(&asl, t) {
                let attempts = rule["MaxAttempts"].as_u64().unwrap_or(3);
                let interval = rule["IntervalSeconds"].as_f64().unwrap_or(1.0);
                let backoff = rule["BackoffRate"].as_f64().unwrap_or(2.0);
                for k in 0..attempts {
                    total += timeout + interval * backoff.powi(k as i32);
                }
            }
        }
        assert!(
            total <= limit as f64,
            "{dialect}: the phases and their retries take up to {total} s of the execution's {limit} s"
        );
    }
}

/// The jobs the export path submits before phase 1, in order: `export start`, `export wait`, and
/// the plan that pins the run to the export.
const EXPORT_JOBS: [&str; 3] = [
    "dynamo-etl-export-start",
    "dynamo-etl-export-wait",
    "dynamo-etl-plan-export",
];

/// The merged state data of an execution from `source`, starting at `start_at`.
fn config(source: &str, start_at: &str, dialect: &str) -> Value {
    json!({
        "config": {"runId": sample("runId"), "totalSegments": 16, "startAt": start_at,
                   "source": source},
        "dialect": dialect,
    })
}

/// The job definitions a walk submits, in order.
fn submitted_jobs(asl: &Value, tasks: &[String]) -> Vec<String> {
    tasks
        .iter()
        .map(|t| submitted(&all_states(asl)[t]).expect("a Batch task").0)
        .collect()
}

/// With `"source": "export"` the run starts a DynamoDB export, waits for it and plans from it,
/// then runs the same phase 1 array and later phases as a scan; the default stays the scan.
#[test]
fn the_export_path_starts_waits_and_plans_before_the_same_phases() {
    let asl = state_machine();
    let jobs = job_definitions();
    assert_eq!(
        asl["States"]["Configure"]["Parameters"]["defaults"]["source"], "scan",
        "an execution without input scans, as before the export path"
    );
    for dialect in DIALECTS {
        let scan = submitted_jobs(&asl, &walk(&asl, &config("scan", "plan", dialect)).0);
        assert!(
            !scan.iter().any(|j| EXPORT_JOBS.contains(&j.as_str())),
            "{dialect}: the scan path runs no export job: {scan:?}"
        );
        let (tasks, end) = walk(&asl, &config("export", "plan", dialect));
        assert_eq!(end, "Done", "{dialect}");
        let export = submitted_jobs(&asl, &tasks);
        assert_eq!(export[..3], EXPORT_JOBS, "{dialect}: {export:?}");
        assert_eq!(
            export[3..],
            scan[1..],
            "{dialect}: after its plan the export path runs the scan path's phases"
        );
        // What each job runs, parsed by the CLI: start and wait find the export by the run id,
        // and the plan pins the run to the export that start noted.
        for job in &export[..3] {
            let j = &jobs[job];
            let cli = parse_job(job, &j.command, &j.env(dialect));
            match &cli.command {
                cli::Command::Export(cli::ExportCommand::Start(args)) => {
                    assert_eq!(job, EXPORT_JOBS[0]);
                    assert!(args.run.run_id.is_some(), "{job}: needs the run id");
                    assert!(args.table.table.is_some(), "{job}: needs the table");
                }
                cli::Command::Export(cli::ExportCommand::Wait(args)) => {
                    assert_eq!(job, EXPORT_JOBS[1]);
                    assert!(
                        args.export_arn.is_none() && args.run.run_id.is_some(),
                        "{job}: the state machine knows only the run id"
                    );
                }
                cli::Command::Plan(args) => {
                    assert_eq!(job, EXPORT_JOBS[2]);
                    assert!(args.export_of_run, "{job}: must plan from the run's export");
                    assert!(args.run.run_id.is_some(), "{job}: needs the run id");
                }
                other => panic!("{job} runs {other:?}"),
            }
        }
        // Resuming: at wait skips the start; from segment on the plan already says what to read.
        let (tasks, _) = walk(&asl, &config("export", "wait", dialect));
        assert_eq!(submitted_jobs(&asl, &tasks)[..2], EXPORT_JOBS[1..]);
        for start_at in ["segment", "prepare", "upload", "replace"] {
            assert_eq!(
                walk(&asl, &config("export", start_at, dialect)),
                walk(&asl, &config("scan", start_at, dialect)),
                "{dialect}, startAt {start_at}"
            );
        }
        // Inputs the state machine refuses never reach a job.
        for (source, start_at) in [("scan", "wait"), ("s3", "plan"), ("EXPORT", "plan")] {
            assert_eq!(
                walk(&asl, &config(source, start_at, dialect)),
                (vec![], "InvalidInput".to_string()),
                "source {source}, startAt {start_at}"
            );
        }
    }
    // A failed export step is reported like any phase, with the export source in the resume input.
    let states = all_states(&asl);
    for job in EXPORT_JOBS {
        let (name, state) = states
            .iter()
            .find(|(_, s)| submitted(s).is_some_and(|(j, _)| j == job))
            .unwrap_or_else(|| panic!("no state submits {job}"));
        let caught = state["Catch"][0]["Next"].as_str().unwrap();
        assert_eq!(
            states[caught]["Next"], "DescribeFailure",
            "{name}: a failure must reach the alert"
        );
        let resume_at = states[caught]["Result"]["resumeAt"].as_str().unwrap();
        let resumed = config("export", resume_at, "redshift");
        assert_eq!(
            walk(&asl, &resumed).1,
            "Done",
            "{caught}: resumeAt {resume_at} must be an input the state machine takes"
        );
    }
    assert_eq!(
        asl["States"]["DescribeFailure"]["Parameters"]["resumeInput"]["source.$"],
        "$.config.source"
    );
}

/// `export wait` must give up on its own (exit 1, which Batch retries) before the attempt's timeout:
/// Batch does not retry an attempt its timeout killed. Over all attempts it waits for hours.
#[test]
fn the_export_wait_gives_up_before_batch_kills_it_and_waits_for_hours() {
    let jobs = job_definitions();
    let job = &jobs["dynamo-etl-export-wait"];
    let cli = parse_job("dynamo-etl-export-wait", &job.command, &job.env("redshift"));
    let cli::Command::Export(cli::ExportCommand::Wait(args)) = &cli.command else {
        panic!("dynamo-etl-export-wait runs {:?}", cli.command);
    };
    let timeout = timeout_of(&jobs, "dynamo-etl-export-wait");
    // The last poll may start just before the wait's end; it and the container's start need time.
    let margin = 120;
    assert!(
        args.wait.wait_seconds + args.wait.poll_seconds + margin <= timeout,
        "an attempt waits {} s plus a {} s poll, within {margin} s of its {timeout} s timeout",
        args.wait.wait_seconds,
        args.wait.poll_seconds
    );
    let attempts = job.def["retryStrategy"]["attempts"].as_u64().unwrap();
    assert!(
        attempts * args.wait.wait_seconds >= 4 * 3600,
        "{attempts} attempts of {} s are too short for an export of a large table",
        args.wait.wait_seconds
    );
    assert!(
        args.wait.poll_seconds >= 30,
        "polling faster than every 30 s only spends DescribeExport calls"
    );
}

/// The export path waits for the export before planning, so it has less room for the state
/// machine's retries: with every attempt of the wait used up and every later phase at its timeout,
/// one whole-job retry of phase 3 (the longest phase) must still fit in the execution's timeout.
#[test]
fn the_export_path_fits_in_the_execution_timeout() {
    let asl = state_machine();
    let jobs = job_definitions();
    let limit = asl["TimeoutSeconds"].as_u64().expect("TimeoutSeconds");
    for dialect in DIALECTS {
        let (tasks, _) = walk(&asl, &config("export", "plan", dialect));
        let mut total = 0;
        for t in &tasks {
            let job = submitted(&all_states(&asl)[t]).unwrap().0;
            total += timeout_of(&jobs, &job);
            if job == "dynamo-etl-export-wait" {
                // Still running at the end of an attempt is exit 1, which Batch retries: the
                // wait's whole budget is every attempt.
                let attempts = jobs[&job].def["retryStrategy"]["attempts"]
                    .as_u64()
                    .unwrap();
                total += (attempts - 1) * timeout_of(&jobs, &job);
            }
        }
        let states = all_states(&asl);
        let upload = tasks
            .iter()
            .find(|t| submitted(&states[t.as_str()]).unwrap().0.contains("phase3"))
            .unwrap();
        let retry = whole_job_retries(&asl, upload)
            .into_iter()
            .next()
            .expect("phase 3 retries a failed job");
        total += retry["IntervalSeconds"].as_u64().unwrap()
            + timeout_of(&jobs, &submitted(&states[upload.as_str()]).unwrap().0);
        assert!(
            total <= limit,
            "{dialect}: the export path with one phase 3 retry takes up to {total} s of the execution's {limit} s"
        );
    }
}

/// The template and arguments of a `States.Format('…', a, b)` expression.
fn format_parts(expr: &str) -> (String, Vec<String>) {
    let body = expr
        .strip_prefix("States.Format('")
        .unwrap_or_else(|| panic!("not a States.Format: {expr}"))
        .strip_suffix(')')
        .unwrap();
    let (template, args) = body
        .split_once("',")
        .unwrap_or((body.trim_end_matches('\''), ""));
    let args = args
        .split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(str::to_string)
        .collect();
    (template.to_string(), args)
}

/// The runbook commands of the failure alert, with sample values put in.
fn alert_commands() -> BTreeMap<String, String> {
    let asl = state_machine();
    let commands = &asl["States"]["DescribeFailure"]["Parameters"]["commands"];
    commands
        .as_object()
        .expect("commands")
        .iter()
        .map(|(k, v)| {
            let (template, args) = format_parts(v.as_str().unwrap());
            let mut text = template;
            for arg in args {
                let value = match arg.as_str() {
                    "$.config.runId" => sample("runId"),
                    "$.config.totalSegments" => sample("totalSegments"),
                    "$$.StateMachine.Id" => {
                        "arn:aws:states:eu-west-1:123456789012:stateMachine:dynamo-etl-nightly"
                    }
                    other => panic!("{k}: no sample for {other}"),
                };
                text = text.replacen("{}", value, 1);
            }
            (
                k.trim_end_matches(".$").to_string(),
                fill(&text, "redshift").replace("<segment>", "3"),
            )
        })
        .collect()
}

#[test]
fn the_failure_alerts_commands_run_as_written() {
    let jobs = job_definitions();
    let commands = alert_commands();
    let mut checked = 0;
    for (key, text) in &commands {
        let words: Vec<String> = text.split_whitespace().map(str::to_string).collect();
        if words[0] == "dynamo-etl" {
            Cli::try_parse_from(&words)
                .unwrap_or_else(|e| panic!("{key}: `{text}` is not a valid command line:\n{e}"));
            checked += 1;
        } else if words[..3] == ["aws", "batch", "submit-job"] {
            let value = |flag: &str| {
                let i = words.iter().position(|w| w == flag).unwrap();
                words[i + 1].clone()
            };
            let job_name = value("--job-definition");
            let job = jobs
                .get(&job_name)
                .unwrap_or_else(|| panic!("{key} submits unknown job definition {job_name}"));
            let given: BTreeMap<String, String> = value("--parameters")
                .split(',')
                .map(|p| {
                    let (k, v) = p.split_once('=').unwrap();
                    (k.to_string(), v.to_string())
                })
                .collect();
            for k in given.keys() {
                assert!(job.refs.contains(k), "{key}: {job_name} takes no {k}");
            }
            for r in &job.refs {
                assert!(
                    given.contains_key(r),
                    "{key}: pass {r} to {job_name} (a retry names its segment, never `auto`)"
                );
            }
            let command = Job::resolve(&job.def, &given);
            assert_ne!(
                given.get("segment").map(String::as_str),
                Some("auto"),
                "{key}: a retry outside an array names its segment"
            );
            parse_job(key, &command, &job.env("redshift"));
            checked += 1;
        }
    }
    assert!(checked >= 6, "{commands:#?}");
}

/// The role Redshift assumes for COPY: a provisioned cluster assumes it as
/// `redshift.amazonaws.com`, a Serverless namespace as `redshift-serverless.amazonaws.com`, and
/// the role must trust both (Redshift management guide, Serverless: granting permissions to other
/// AWS services, <https://docs.aws.amazon.com/redshift/latest/mgmt/serverless-iam.html>); the
/// deploy steps attach it either way.
#[test]
fn the_copy_role_is_assumable_by_clusters_and_serverless() {
    let trust = resources("AWS::IAM::Role")["RedshiftCopyRole"]["AssumeRolePolicyDocument"].clone();
    let mut principals = BTreeSet::new();
    for statement in trust["Statement"].as_array().unwrap() {
        assert_eq!(statement["Action"], "sts:AssumeRole");
        match &statement["Principal"]["Service"] {
            Value::String(s) => principals.insert(s.clone()),
            Value::Array(all) => {
                for s in all {
                    principals.insert(s.as_str().unwrap().to_string());
                }
                true
            }
            other => panic!("unexpected principal {other}"),
        };
    }
    for service in [
        "redshift.amazonaws.com",
        "redshift-serverless.amazonaws.com",
    ] {
        assert!(
            principals.contains(service),
            "{service} is not trusted: {principals:?}"
        );
    }
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    for step in [
        "aws redshift modify-cluster-iam-roles",
        "aws redshift-serverless update-namespace",
    ] {
        assert!(
            readme.contains(step),
            "jobs/aws/README.md does not show `{step}`"
        );
    }
}

#[test]
fn schedules_and_policies_are_well_formed() {
    let schedules = schedules();
    assert_eq!(
        schedules.len(),
        3,
        "a nightly run, a weekly schema job and hourly increments"
    );
    for (path, s) in &schedules {
        assert!(
            s["ScheduleExpression"]
                .as_str()
                .is_some_and(|e| e.starts_with("cron(") || e.starts_with("rate(")),
            "{}",
            path
        );
        assert!(s["Target"]["Arn"].as_str().is_some(), "{}", path);
        assert!(s["Target"]["RoleArn"].as_str().is_some(), "{}", path);
    }
    for (path, p) in policy_documents() {
        assert_eq!(p["Version"], "2012-10-17", "{}", path);
        for statement in p["Statement"].as_array().unwrap() {
            let actions = actions_of(statement);
            assert!(
                !actions.iter().any(|a| a == "*" || a.ends_with(":*")),
                "{}: wildcard action in {actions:?}",
                path
            );
            // Some actions have no resource-level permissions at all.
            let resourceless = actions.iter().all(|a| {
                [
                    "ecr:GetAuthorizationToken",
                    "batch:DescribeJobs",
                    "batch:ListJobs",
                ]
                .contains(&a.as_str())
            });
            if statement.get("Principal").is_none() && !resourceless {
                assert_ne!(
                    statement["Resource"], "*",
                    "{}: least privilege means named resources",
                    path
                );
            }
            // A condition on a key the action's requests do not carry is false, so the statement
            // never allows anything (reference_policies_elements_condition_operators). S3 sets
            // s3:prefix, s3:delimiter and s3:max-keys only for listing objects
            // (https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazons3.html).
            let keys: Vec<&String> = statement["Condition"]
                .as_object()
                .into_iter()
                .flat_map(|ops| ops.values())
                .flat_map(|keys| keys.as_object().unwrap().keys())
                .collect();
            for key in keys {
                if ["s3:prefix", "s3:delimiter", "s3:max-keys"].contains(&key.as_str()) {
                    for a in &actions {
                        assert!(
                            ["s3:ListBucket", "s3:ListBucketVersions"].contains(&a.as_str()),
                            "{}: {a} requests carry no {key}, so this statement never allows {a}",
                            path
                        );
                    }
                }
            }
        }
    }
}

/// Whether an IAM resource pattern (`*` any run of characters) covers `arn`.
fn covers(pattern: &str, arn: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == arn,
        Some((head, tail)) => {
            arn.starts_with(head)
                && (0..=arn.len() - head.len()).any(|i| covers(tail, &arn[head.len() + i..]))
        }
    }
}

fn resources_of(statement: &Value) -> Vec<String> {
    match &statement["Resource"] {
        Value::String(r) => vec![r.clone()],
        Value::Array(rs) => rs.iter().map(|r| r.as_str().unwrap().to_string()).collect(),
        _ => vec![],
    }
}

fn actions_of(statement: &Value) -> Vec<String> {
    match &statement["Action"] {
        Value::String(a) => vec![a.clone()],
        Value::Array(a) => a.iter().map(|x| x.as_str().unwrap().to_string()).collect(),
        other => panic!("Action {other}"),
    }
}

/// The schedules by logical id.
fn schedules() -> Vec<(String, Value)> {
    resources("AWS::Scheduler::Schedule").into_iter().collect()
}

/// Every role's trust policy and inline policies, named by the role's logical id.
fn policy_documents() -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for (id, role) in resources("AWS::IAM::Role") {
        out.push((
            format!("{id} trust"),
            role["AssumeRolePolicyDocument"].clone(),
        ));
        for p in role["Policies"].as_array().into_iter().flatten() {
            out.push((format!("{id} policy"), p["PolicyDocument"].clone()));
        }
    }
    out
}

/// The statements of a role's inline policies, as one policy (`role`: its logical id).
fn policy(role: &str) -> Value {
    let roles = resources("AWS::IAM::Role");
    let statements: Vec<Value> = roles
        .get(role)
        .unwrap_or_else(|| panic!("no role {role} in the template"))["Policies"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|p| {
            p["PolicyDocument"]["Statement"]
                .as_array()
                .cloned()
                .unwrap()
        })
        .collect();
    json!({"Version": "2012-10-17", "Statement": statements})
}

/// Whether `policy` allows `action` on `arn`.
fn allows(policy: &Value, action: &str, arn: &str) -> bool {
    policy["Statement"].as_array().unwrap().iter().any(|s| {
        s["Effect"] == "Allow"
            && actions_of(s).iter().any(|a| a == action)
            && resources_of(s).iter().any(|r| covers(r, arn))
    })
}

#[test]
fn the_roles_may_submit_and_start_what_they_are_given() {
    let states = filled(&policy("StatesRole"), "redshift");
    let asl = state_machine();
    for (name, state) in &all_states(&asl) {
        if let Some((job, _)) = submitted(state) {
            let arn = format!("arn:aws:batch:eu-west-1:123456789012:job-definition/{job}:7");
            assert!(
                allows(&states, "batch:SubmitJob", &arn),
                "{name}: the states role may not submit {job}"
            );
        }
    }
    let scheduler = filled(&policy("SchedulerRole"), "redshift");
    let mut submitting = 0;
    for (path, schedule) in schedules() {
        if !schedule["Target"]["Arn"]
            .as_str()
            .is_some_and(|a| a.ends_with("batch:submitJob"))
        {
            continue;
        }
        submitting += 1;
        let input: Value = serde_json::from_str(&fill(
            schedule["Target"]["Input"].as_str().unwrap(),
            "redshift",
        ))
        .unwrap();
        let job = input["JobDefinition"].as_str().unwrap();
        assert!(job_definitions().contains_key(job), "{}: {job}", path);
        let arn = format!("arn:aws:batch:eu-west-1:123456789012:job-definition/{job}:3");
        assert!(
            allows(&scheduler, "batch:SubmitJob", &arn),
            "{}: the scheduler may not submit {job}",
            path
        );
    }
    assert_eq!(
        submitting, 2,
        "the weekly schema job and the hourly increment"
    );
}

/// An AWS SDK operation the code may call, as the client's fluent method, with the IAM actions it
/// needs and the resource those actions must be granted on (`""`: not checked here). Sources: the
/// Service Authorization Reference pages
///   S3        https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazons3.html
///   DynamoDB  https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazondynamodb.html
///   Redshift  https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazonredshift.html
///   Redshift Serverless
///     https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazonredshiftserverless.html
/// and, where an operation is not named after its action, the API page that says which:
/// HeadObject needs s3:GetObject (https://docs.aws.amazon.com/AmazonS3/latest/API/API_HeadObject.html),
/// DeleteObjects s3:DeleteObject (https://docs.aws.amazon.com/AmazonS3/latest/API/API_DeleteObjects.html),
/// ListObjectsV2 and HeadBucket s3:ListBucket (API_ListObjectsV2.html, API_HeadBucket.html),
/// the multipart upload steps s3:PutObject
/// (https://docs.aws.amazon.com/AmazonS3/latest/userguide/mpuoverview.html#mpuAndPermissions),
/// ListMultipartUploads s3:ListBucketMultipartUploads and ListParts s3:ListMultipartUploadParts.
struct Operation {
    krate: &'static str,
    method: &'static str,
    actions: &'static [&'static str],
    resource: &'static str,
}

const S3: &str = "aws_sdk_s3";
const DYNAMODB: &str = "aws_sdk_dynamodb";
const REDSHIFT: &str = "aws_sdk_redshift";
const REDSHIFT_SERVERLESS: &str = "aws_sdk_redshiftserverless";
const OBJECTS: &str = "arn:aws:s3:::${StagingBucket}/${Prefix}/runs/r/part.csv.zst";
const BUCKET: &str = "arn:aws:s3:::${StagingBucket}";
const TABLE: &str = "arn:aws:dynamodb:${AWS::Region}:${AWS::AccountId}:table/${Table}";
const STREAMS: &str = "aws_sdk_dynamodbstreams";
const STREAM: &str =
    "arn:aws:dynamodb:${AWS::Region}:${AWS::AccountId}:table/${Table}/stream/2026-12-01T00:00:00.000";
const EXPORT_OBJECTS: &str =
    "arn:aws:s3:::${StagingBucket}/${Prefix}/runs/r/export/AWSDynamoDB/01234567890123-abcdefgh/data/x.json.gz";
const CLUSTER_DATABASE: &str =
    "arn:aws:redshift:${AWS::Region}:${AWS::AccountId}:dbname:${RedshiftClusterId}/${RedshiftDatabase}";
const WORKGROUP: &str =
    "arn:aws:redshift-serverless:${AWS::Region}:${AWS::AccountId}:workgroup/${RedshiftWorkgroupId}";

const fn op(
    krate: &'static str,
    method: &'static str,
    actions: &'static [&'static str],
    resource: &'static str,
) -> Operation {
    Operation {
        krate,
        method,
        actions,
        resource,
    }
}

const OPERATIONS: &[Operation] = &[
    op(S3, "get_object", &["s3:GetObject"], OBJECTS),
    op(S3, "head_object", &["s3:GetObject"], OBJECTS),
    op(S3, "put_object", &["s3:PutObject"], OBJECTS),
    op(
        S3,
        "copy_object",
        &["s3:GetObject", "s3:PutObject"],
        OBJECTS,
    ),
    op(S3, "delete_object", &["s3:DeleteObject"], OBJECTS),
    op(S3, "delete_objects", &["s3:DeleteObject"], OBJECTS),
    op(S3, "create_multipart_upload", &["s3:PutObject"], OBJECTS),
    op(S3, "upload_part", &["s3:PutObject"], OBJECTS),
    op(S3, "complete_multipart_upload", &["s3:PutObject"], OBJECTS),
    op(
        S3,
        "abort_multipart_upload",
        &["s3:AbortMultipartUpload"],
        OBJECTS,
    ),
    op(S3, "list_parts", &["s3:ListMultipartUploadParts"], OBJECTS),
    op(S3, "list_objects_v2", &["s3:ListBucket"], BUCKET),
    op(S3, "list_objects", &["s3:ListBucket"], BUCKET),
    op(S3, "head_bucket", &["s3:ListBucket"], BUCKET),
    op(
        S3,
        "list_multipart_uploads",
        &["s3:ListBucketMultipartUploads"],
        BUCKET,
    ),
    op(S3, "get_bucket_location", &["s3:GetBucketLocation"], BUCKET),
    op(DYNAMODB, "scan", &["dynamodb:Scan"], TABLE),
    op(
        DYNAMODB,
        "describe_table",
        &["dynamodb:DescribeTable"],
        TABLE,
    ),
    op(DYNAMODB, "query", &["dynamodb:Query"], TABLE),
    op(DYNAMODB, "get_item", &["dynamodb:GetItem"], TABLE),
    op(
        DYNAMODB,
        "batch_get_item",
        &["dynamodb:BatchGetItem"],
        TABLE,
    ),
    op(DYNAMODB, "put_item", &["dynamodb:PutItem"], TABLE),
    op(
        DYNAMODB,
        "batch_write_item",
        &["dynamodb:BatchWriteItem"],
        TABLE,
    ),
    op(DYNAMODB, "create_table", &["dynamodb:CreateTable"], TABLE),
    op(DYNAMODB, "delete_table", &["dynamodb:DeleteTable"], TABLE),
    op(
        DYNAMODB,
        "describe_continuous_backups",
        &["dynamodb:DescribeContinuousBackups"],
        TABLE,
    ),
    op(
        DYNAMODB,
        "export_table_to_point_in_time",
        &["dynamodb:ExportTableToPointInTime"],
        TABLE,
    ),
    op(
        DYNAMODB,
        "describe_export",
        &["dynamodb:DescribeExport"],
        "",
    ),
    op(
        STREAMS,
        "describe_stream",
        &["dynamodb:DescribeStream"],
        STREAM,
    ),
    op(
        STREAMS,
        "get_shard_iterator",
        &["dynamodb:GetShardIterator"],
        STREAM,
    ),
    op(STREAMS, "get_records", &["dynamodb:GetRecords"], STREAM),
    op(
        REDSHIFT,
        "get_cluster_credentials_with_iam",
        &["redshift:GetClusterCredentialsWithIAM"],
        CLUSTER_DATABASE,
    ),
    // With DbGroups it also needs redshift:JoinGroup, with AutoCreate redshift:CreateClusterUser
    // (API_GetClusterCredentials); add those by hand if the code uses them.
    op(
        REDSHIFT,
        "get_cluster_credentials",
        &["redshift:GetClusterCredentials"],
        "",
    ),
    op(
        REDSHIFT,
        "describe_clusters",
        &["redshift:DescribeClusters"],
        "",
    ),
    op(
        REDSHIFT_SERVERLESS,
        "get_credentials",
        &["redshift-serverless:GetCredentials"],
        WORKGROUP,
    ),
    op(
        REDSHIFT_SERVERLESS,
        "get_workgroup",
        &["redshift-serverless:GetWorkgroup"],
        "",
    ),
];

/// Actions an operation needs besides its own, on other resources: DynamoDB writes an export
/// with the caller's S3 permissions, which must allow s3:AbortMultipartUpload, s3:PutObject and
/// s3:PutObjectAcl on the destination
/// (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/S3DataExport_Requesting.html).
const IMPLIED: &[(&str, &str, &str)] = &[
    (
        "export_table_to_point_in_time",
        "s3:PutObject",
        EXPORT_OBJECTS,
    ),
    (
        "export_table_to_point_in_time",
        "s3:AbortMultipartUpload",
        EXPORT_OBJECTS,
    ),
    (
        "export_table_to_point_in_time",
        "s3:PutObjectAcl",
        EXPORT_OBJECTS,
    ),
];

/// Methods called on an SDK client that are not operations.
const NOT_OPERATIONS: &[&str] = &["clone", "config"];

/// `src` with comments and string and character literals blanked out (lengths kept), so only code
/// is searched.
fn code_only(src: &str) -> String {
    let b = src.as_bytes();
    let mut out = b.to_vec();
    let blank = |out: &mut Vec<u8>, from: usize, to: usize| {
        for c in &mut out[from..to.min(b.len())] {
            if *c != b'\n' {
                *c = b' ';
            }
        }
    };
    let mut i = 0;
    while i < b.len() {
        let rest = &b[i..];
        if rest.starts_with(b"//") {
            let end = rest
                .iter()
                .position(|&c| c == b'\n')
                .map_or(b.len(), |p| i + p);
            blank(&mut out, i, end);
            i = end;
        } else if rest.starts_with(b"/*") {
            let (mut depth, mut j) = (0, i);
            while j < b.len() {
                if b[j..].starts_with(b"/*") {
                    depth += 1;
                    j += 2;
                } else if b[j..].starts_with(b"*/") {
                    depth -= 1;
                    j += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    j += 1;
                }
            }
            blank(&mut out, i, j);
            i = j;
        } else if rest[0] == b'r'
            && rest.get(1 + raw_hashes(rest)) == Some(&b'"')
            && (i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_'))
        {
            let hashes = raw_hashes(rest);
            let close: Vec<u8> = std::iter::once(b'"')
                .chain(std::iter::repeat_n(b'#', hashes))
                .collect();
            let start = i + 2 + hashes;
            let end = b[start..]
                .windows(close.len())
                .position(|w| w == close.as_slice())
                .map_or(b.len(), |p| start + p + close.len());
            blank(&mut out, i, end);
            i = end;
        } else if rest[0] == b'"' {
            let mut j = i + 1;
            while j < b.len() && b[j] != b'"' {
                j += if b[j] == b'\\' { 2 } else { 1 };
            }
            blank(&mut out, i, j + 1);
            i = j + 1;
        } else if rest[0] == b'\'' {
            // A character literal ('x', '\n', '\u{..}') or a lifetime ('a).
            let end = if rest.get(1) == Some(&b'\\') {
                rest.get(3..)
                    .and_then(|r| r.iter().position(|&c| c == b'\''))
                    .map(|p| i + 4 + p)
            } else {
                let width = std::str::from_utf8(&rest[1..])
                    .ok()
                    .and_then(|s| s.chars().next())
                    .map_or(1, char::len_utf8);
                (rest.get(1 + width) == Some(&b'\'')).then_some(i + 2 + width)
            };
            match end {
                Some(end) => {
                    blank(&mut out, i, end);
                    i = end;
                }
                None => i += 1,
            }
        } else {
            i += 1;
        }
    }
    String::from_utf8(out).expect("blanking keeps UTF-8 (only ASCII is replaced)")
}

/// How many `#` follow the `r` of a possible raw string literal.
fn raw_hashes(rest: &[u8]) -> usize {
    rest[1..].iter().take_while(|&&c| c == b'#').count()
}

/// `code` without its `#[cfg(test)]` items (test modules call SDKs the deployed binary never does).
fn without_tests(code: &str) -> String {
    let mut out = code.to_string();
    let mut from = 0;
    while let Some(p) = out[from..].find("#[cfg(test)]") {
        let start = from + p;
        let body = &out[start..];
        let semi = body.find(';');
        let brace = body.find('{');
        let end = match (brace, semi) {
            (Some(b), s) if s.is_none_or(|s| b < s) => {
                let mut depth = 0;
                let mut end = body.len();
                for (k, c) in body[b..].char_indices() {
                    match c {
                        '{' => depth += 1,
                        '}' => {
                            depth -= 1;
                            if depth == 0 {
                                end = b + k + 1;
                                break;
                            }
                        }
                        _ => {}
                    }
                }
                end
            }
            (_, Some(s)) => s + 1,
            _ => body.len(),
        };
        out.replace_range(start..start + end, &" ".repeat(end));
        from = start + end;
    }
    out
}

/// Whether `code` names the crate `krate` (as a whole identifier).
fn names_crate(code: &str, krate: &str) -> bool {
    code.match_indices(krate).any(|(i, _)| {
        let after = code[i + krate.len()..].chars().next();
        let before = code[..i].chars().next_back();
        !after.is_some_and(|c| c.is_alphanumeric() || c == '_')
            && !before.is_some_and(|c| c.is_alphanumeric() || c == '_')
    })
}

/// Calls of the form `receiver.method()` (no arguments, as SDK operations start) in `code`:
/// (receiver, method, line).
fn empty_calls(code: &str) -> Vec<(String, String, usize)> {
    let b = code.as_bytes();
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let mut out = Vec::new();
    for (dot, _) in code.match_indices('.') {
        let mut j = dot + 1;
        while j < b.len() && b[j].is_ascii_whitespace() {
            j += 1;
        }
        let start = j;
        while j < b.len() && ident(b[j]) {
            j += 1;
        }
        if start == j {
            continue;
        }
        let method = &code[start..j];
        while j < b.len() && b[j].is_ascii_whitespace() {
            j += 1;
        }
        if !code[j..].starts_with('(') {
            continue;
        }
        j += 1;
        while j < b.len() && b[j].is_ascii_whitespace() {
            j += 1;
        }
        if !code[j..].starts_with(')') {
            continue;
        }
        let mut k = dot;
        while k > 0 && b[k - 1].is_ascii_whitespace() {
            k -= 1;
        }
        let end = k;
        while k > 0 && ident(b[k - 1]) {
            k -= 1;
        }
        let line = code[..dot].matches('\n').count() + 1;
        out.push((code[k..end].to_string(), method.to_string(), line));
    }
    out
}

/// The Rust files of the deployed binary: `src/` without the test kit and the helper binaries
/// (both are built only with the `testkit` feature).
fn product_sources() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                if !path.ends_with("src/testkit") && !path.ends_with("src/bin") {
                    walk(&path, out);
                }
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    walk(&repo().join("src"), &mut out);
    out.sort();
    out
}

/// The AWS SDK operations the deployed code calls, each with where it is called.
fn sdk_calls() -> BTreeMap<&'static str, (&'static Operation, Vec<String>)> {
    let mut used: BTreeMap<&'static str, (&'static Operation, Vec<String>)> = BTreeMap::new();
    let mut unknown = Vec::new();
    for path in product_sources() {
        let code = without_tests(&code_only(&std::fs::read_to_string(&path).unwrap()));
        let shown = path.strip_prefix(repo()).unwrap().display().to_string();
        for (receiver, method, line) in empty_calls(&code) {
            let on_client = receiver.ends_with("client");
            let found = OPERATIONS
                .iter()
                .find(|o| o.method == method && (on_client || names_crate(&code, o.krate)));
            match found {
                Some(o) => {
                    let entry = used.entry(o.method).or_insert((o, Vec::new()));
                    entry.1.push(format!("{shown}:{line}"));
                }
                None if on_client && !NOT_OPERATIONS.contains(&method.as_str()) => {
                    unknown.push(format!("{shown}:{line}: {receiver}.{method}()"))
                }
                None => {}
            }
        }
    }
    // Requests built from an operation's input builder (`operation::<name>::builders::…`) and
    // sent with `send_with(client)` are calls too.
    for path in product_sources() {
        let code = without_tests(&code_only(&std::fs::read_to_string(&path).unwrap()));
        let shown = path.strip_prefix(repo()).unwrap().display().to_string();
        for o in OPERATIONS {
            if !names_crate(&code, o.krate) {
                continue;
            }
            for (at, _) in code.match_indices(&format!("::operation::{}::", o.method)) {
                let line = code[..at].matches('\n').count() + 1;
                let entry = used.entry(o.method).or_insert((o, Vec::new()));
                entry.1.push(format!("{shown}:{line}"));
            }
        }
    }
    assert!(
        unknown.is_empty(),
        "SDK calls this test does not know; add them to OPERATIONS with their IAM actions: {unknown:#?}"
    );
    used
}

/// The job role may do what the code does and nothing else.
#[test]
fn the_job_policy_grants_exactly_the_actions_the_code_calls() {
    let used = sdk_calls();
    for expected in ["scan", "get_object"] {
        assert!(
            used.contains_key(expected),
            "the scan of src/ no longer finds {expected}(): {:?}",
            used.keys()
        );
    }
    let job = policy("JobRole");
    let granted: BTreeSet<String> = job["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["Effect"] == "Allow")
        .flat_map(actions_of)
        .collect();
    let mut needed = BTreeSet::new();
    let mut missing = Vec::new();
    for (method, (op, places)) in &used {
        let at = places.join(", ");
        for &action in op.actions {
            needed.insert(action);
            if !granted.contains(action) {
                missing.push(format!("{action} (for {method}() at {at})"));
            } else if !op.resource.is_empty() && !allows(&job, action, op.resource) {
                missing.push(format!(
                    "{action} is granted, but not on {} (for {method}() at {at})",
                    op.resource
                ));
            }
        }
    }
    for &(method, action, resource) in IMPLIED {
        if let Some((_, places)) = used.get(method) {
            needed.insert(action);
            if !allows(&job, action, resource) {
                missing.push(format!(
                    "{action} on {resource} (for {method}() at {})",
                    places.join(", ")
                ));
            }
        }
    }
    let unused: Vec<&String> = granted
        .iter()
        .filter(|a| !needed.contains(a.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "the template's JobRole lacks what the code calls: {missing:#?}"
    );
    assert!(
        unused.is_empty(),
        "the template's JobRole grants actions no code calls: {unused:?}"
    );
}

/// The scan itself finds calls however they are written, and only real ones.
#[test]
fn the_sdk_call_scan_sees_calls_not_comments() {
    let src = r#"
        use aws_sdk_s3::Client;
        // self.client.list_parts() in a comment
        let s = "x.list_parts()";
        let c = '{';
        fn f<'a>(x: &'a str) {}
        let out = self
            .client
            .get_object()
            .send();
        let v = items.iter().scan(0, |a, b| None);
        #[cfg(test)]
        mod tests {
            fn t() { client.put_object(); }
        }
    "#;
    let code = without_tests(&code_only(src));
    let calls: Vec<(String, String)> = empty_calls(&code)
        .into_iter()
        .map(|(r, m, _)| (r, m))
        .collect();
    let expected = [("client", "get_object"), ("", "send"), ("items", "iter")];
    let expected: Vec<(String, String)> = expected
        .iter()
        .map(|(r, m)| (r.to_string(), m.to_string()))
        .collect();
    assert_eq!(calls, expected, "{code}");
    assert!(names_crate(&code, S3));
    assert!(!names_crate(
        "use aws_sdk_redshiftserverless::Client;",
        REDSHIFT
    ));
    assert!(names_crate(
        "use aws_sdk_redshiftserverless::Client;",
        REDSHIFT_SERVERLESS
    ));
}

/// Whether CloudFormation would take `value` for a parameter with `pattern` as its
/// `AllowedPattern` (the whole value must match). Python's `re` stands in for CloudFormation's
/// matcher; the patterns use nothing on which the two differ.
fn allowed_by(pattern: &str, value: &str) -> bool {
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import re, sys; sys.exit(0 if re.fullmatch(sys.argv[1], sys.argv[2]) else 1)",
            pattern,
            value,
        ])
        .output()
        .expect("python3 runs");
    match out.status.code() {
        Some(0) => true,
        Some(1) => false,
        _ => panic!("python3: {}", String::from_utf8_lossy(&out.stderr)),
    }
}

/// Every `${Name}` the template's resources use is a parameter, a pseudo parameter, or a resource
/// (or its attribute); every parameter is used and listed in jobs/aws/README.md.
#[test]
fn every_parameter_is_used_and_documented() {
    let t = template();
    let parameters: BTreeSet<String> = t["Parameters"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    let ids: BTreeSet<String> = t["Resources"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    let mut text = symbolic(&t["Resources"]).to_string();
    text.push_str(&symbolic(&t["Outputs"]).to_string());
    let substitutions = state_machine_symbolic().to_string();
    let mut used = BTreeSet::new();
    for p in placeholders(&text)
        .into_iter()
        .chain(placeholders(&substitutions))
    {
        let base = p.split('.').next().unwrap().to_string();
        let known = p.starts_with("AWS::")
            || parameters.contains(&p)
            || ids.contains(&base)
            // the state machine's own substitutions, checked by state_machine_symbolic
            || t["Resources"]["StateMachine"]["Properties"]["DefinitionSubstitutions"][&p].is_object();
        assert!(
            known,
            "${{{p}}} is no parameter, pseudo parameter or resource"
        );
        used.insert(p);
    }
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    for p in &parameters {
        assert!(used.contains(p), "parameter {p} is not used");
        assert!(
            readme.contains(&format!("| `{p}` |")),
            "jobs/aws/README.md's parameter table lacks {p}"
        );
        // The sample every other test puts in is a value the stack would take.
        if let Some(pattern) = t["Parameters"][p]["AllowedPattern"].as_str() {
            if let Ok(sample) = std::panic::catch_unwind(|| placeholder_sample(p, "redshift")) {
                assert!(
                    allowed_by(pattern, &sample),
                    "{p}: the sample {sample} is refused"
                );
            }
        }
    }
}

/// The parameters file the README deploys with names every parameter without a default, only
/// parameters the template has, and values the template takes.
#[test]
fn the_example_parameters_file_deploys_the_template() {
    let t = template();
    let path = root().join("parameters.example.json");
    let file: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let mut given = BTreeSet::new();
    for p in file.as_array().expect("CloudFormation's format: a list") {
        let key = p["ParameterKey"]
            .as_str()
            .expect("ParameterKey")
            .to_string();
        let value = p["ParameterValue"].as_str().expect("ParameterValue");
        let declared = &t["Parameters"][&key];
        assert!(declared.is_object(), "the template has no parameter {key}");
        if let Some(pattern) = declared["AllowedPattern"].as_str() {
            assert!(allowed_by(pattern, value), "{key}: {value} is refused");
        }
        if let Some(allowed) = declared["AllowedValues"].as_array() {
            assert!(
                allowed.iter().any(|a| a == value),
                "{key}: {value} is refused"
            );
        }
        given.insert(key);
    }
    for (name, declared) in t["Parameters"].as_object().unwrap() {
        assert!(
            declared.get("Default").is_some() || given.contains(name),
            "parameters.example.json lacks {name}, which has no default"
        );
    }
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    assert!(
        readme.contains("aws cloudformation deploy")
            && readme.contains("--parameter-overrides file://"),
        "jobs/aws/README.md deploys with a parameters file"
    );
}

/// The job definitions run every command with the sample stack's values put in, for either dialect.
#[test]
fn the_stacks_commands_run_with_the_cli_for_each_dialect() {
    let t = template();
    let allowed: Vec<&str> = t["Parameters"]["Dialect"]["AllowedValues"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(
        allowed, DIALECTS,
        "Dialect takes exactly the CLI's dialects"
    );
    assert_eq!(t["Parameters"]["Dialect"]["Default"], "redshift");
    for dialect in DIALECTS {
        assert_eq!(
            filled(&state_machine_symbolic(), dialect)["States"]["MergeInput"]["Parameters"]
                ["dialect"],
            dialect
        );
        for (name, job) in job_definitions() {
            let env = job.env(dialect);
            parse_job(&name, &job.command, &env);
            if let Some((_, d)) = env.iter().find(|(k, _)| k == "ETL_DIALECT") {
                assert_eq!(d, dialect, "{name}");
                assert!(DialectArg::from_str(d, false).is_ok(), "{name}: {d}");
            }
        }
    }
}

/// CloudFormation refuses, at deploy time, the grantees the CLI would refuse at the first swap.
#[test]
fn the_stack_refuses_grantees_the_cli_would_not_take() {
    let t = template();
    let pattern = t["Parameters"]["GrantSelectTo"]["AllowedPattern"]
        .as_str()
        .expect("GrantSelectTo has an AllowedPattern");
    for value in ["group:analysts,role:bi", "alice", "role:bi"] {
        assert!(allowed_by(pattern, value), "{value}");
        Cli::try_parse_from(["dynamo-etl", "replace", "--grant-select-to", value])
            .unwrap_or_else(|e| panic!("the stack takes {value:?} but the CLI does not: {e}"));
    }
    for value in ["team:analysts", "group:analysts,,role:bi", ""] {
        assert!(!allowed_by(pattern, value), "the stack takes {value:?}");
        if !value.is_empty() {
            let err = Cli::try_parse_from(["dynamo-etl", "replace", "--grant-select-to", value])
                .err()
                .unwrap_or_else(|| panic!("the CLI takes {value:?} although the stack refuses it"));
            assert!(err.to_string().contains("grantee"), "{err}");
        }
    }
}

/// Step Functions reports every failed Batch job as `States.TaskFailed`, with the job's
/// description as the cause. A job that exited 2 must not be submitted again by the state machine:
/// the only whole-job retries are on `DynamoEtl.JobFailed`, which a branch raises only after it
/// read the exit code and found no 2, and `DynamoEtl.ExitCode2` is retried nowhere.
#[test]
fn the_state_machine_never_resubmits_a_job_that_exited_2() {
    let asl = state_machine();
    let states = all_states(&asl);
    for (name, state) in &states {
        for rule in state["Retry"].as_array().into_iter().flatten() {
            for e in rule["ErrorEquals"].as_array().unwrap() {
                let e = e.as_str().unwrap();
                assert!(
                    BATCH_TRANSIENT.contains(&e)
                        || e == "DynamoEtl.JobFailed"
                        || (state["Resource"]
                            .as_str()
                            .is_some_and(|r| !r.contains("submitJob"))
                            && e == "States.ALL"),
                    "{name} retries {e}: a job that exited 2 could be submitted again"
                );
            }
        }
        if state["Type"] == "Fail" && state["Error"] == "DynamoEtl.JobFailed" {
            // Reached only from a Choice whose earlier rules send exit 2 elsewhere.
            let choosers: Vec<&Value> = states
                .values()
                .filter(|s| s["Type"] == "Choice")
                .filter(|s| {
                    s["Default"] == name.as_str()
                        || s["Choices"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .any(|c| c["Next"] == name.as_str())
                })
                .collect();
            assert!(
                !choosers.is_empty(),
                "{name}: raised without looking at the exit code"
            );
            for c in choosers {
                let to_fatal =
                    c["Choices"].as_array().unwrap().iter().any(|r| {
                        states[r["Next"].as_str().unwrap()]["Error"] == "DynamoEtl.ExitCode2"
                    });
                assert!(
                    to_fatal,
                    "{name}: its Choice never sends exit 2 to DynamoEtl.ExitCode2"
                );
            }
        }
    }
    for (name, state) in asl["States"].as_object().unwrap() {
        if state["Type"] != "Parallel" {
            continue;
        }
        let retried: Vec<&str> = state["Retry"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|r| r["ErrorEquals"].as_array().unwrap())
            .map(|e| e.as_str().unwrap())
            .collect();
        assert_eq!(retried, ["DynamoEtl.JobFailed"], "{name}");
    }
}
/// A Catch on `States.TaskFailed` takes every error but `States.Timeout`, so a Batch API error
/// whose retries ran out arrives with a plain-text cause. `States.StringToJson` on it would fail
/// with `States.Runtime`, which no Catch takes, and the execution would end without its alert.
/// So a state that reads a failed job's cause as JSON is entered only from a Choice that first
/// sends a missing cause elsewhere and then only a cause that starts like a JSON object.
#[test]
fn a_failed_jobs_cause_is_read_as_json_only_when_it_can_be_one() {
    let asl = state_machine();
    let states = all_states(&asl);
    let mut readers = 0;
    for (name, state) in &states {
        if !state["Parameters"]
            .to_string()
            .contains("States.StringToJson($.error.Cause)")
        {
            continue;
        }
        readers += 1;
        let entered_from: Vec<(&String, &Value)> = states
            .iter()
            .filter(|(_, s)| {
                let to_it = |v: &Value| v.as_str() == Some(name.as_str());
                to_it(&s["Next"])
                    || to_it(&s["Default"])
                    || s["Choices"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|c| to_it(&c["Next"]))
                    || s["Catch"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|c| to_it(&c["Next"]))
            })
            .collect();
        assert!(!entered_from.is_empty(), "{name} is never entered");
        for (from, chooser) in entered_from {
            assert_eq!(
                chooser["Type"], "Choice",
                "{name} is entered from {from}, not from a Choice"
            );
            assert_ne!(
                chooser["Default"],
                name.as_str(),
                "{from}: its Default reads any cause"
            );
            let rules: Vec<&Value> = chooser["Choices"].as_array().unwrap().iter().collect();
            let on_cause = |r: &Value| r["Variable"] == "$.error.Cause";
            assert!(
                on_cause(rules[0])
                    && rules[0]["IsPresent"] == false
                    && rules[0]["Next"] != name.as_str(),
                "{from}: its first rule must send a missing cause elsewhere"
            );
            for rule in rules.iter().filter(|r| r["Next"] == name.as_str()) {
                assert!(
                    on_cause(rule) && rule["StringMatches"] == "{*",
                    "{from}: sends to {name} a cause that may not be JSON: {rule}"
                );
            }
        }
    }
    assert_eq!(
        readers, 3,
        "phase 3 (each dialect's) and replace read their job's exit code"
    );
}

/// A `postgres://` URL selects the PostgreSQL dialect, so a Redshift endpoint must be given as
/// `redshift://` wherever the docs show one.
#[test]
fn redshift_examples_use_the_redshift_scheme() {
    let mut seen = 0;
    for doc in [root().join("README.md"), repo().join("README.md")] {
        let text = std::fs::read_to_string(&doc).unwrap();
        for scheme in ["postgres://", "postgresql://", "redshift://"] {
            for (i, _) in text.match_indices(scheme) {
                let url: String = text[i..]
                    .chars()
                    .take_while(|c| !c.is_whitespace() && !"'\"`)".contains(*c))
                    .collect();
                let redshift_host = url.contains(".redshift.amazonaws.com")
                    || url.contains(".redshift-serverless.amazonaws.com");
                if redshift_host {
                    seen += 1;
                    assert_eq!(
                        WarehouseUrl::parse(&url).unwrap().implied_dialect(),
                        Some(DialectName::Redshift),
                        "{}: {url} would be loaded as PostgreSQL",
                        doc.display()
                    );
                }
            }
        }
    }
    assert!(
        seen >= 1,
        "the deployment README shows the secret for a Redshift cluster"
    );
}

/// `follow` runs as an ECS service (a long-running consumer, not a batch job that ends): its
/// container's command and environment parse with the CLI like the jobs', it runs as the job
/// role (whose stream actions the policy test checks against the code), it runs one task at
/// most, and a deployment stops the old task before it starts the new one (the lease would make
/// a second follower exit 1 anyway).
#[test]
fn follow_runs_as_one_ecs_task_with_the_job_role() {
    let services = resources("AWS::ECS::Service");
    let service = api_casing(&services["FollowService"]);
    assert_eq!(service["launchType"], "FARGATE");
    assert_eq!(service["deploymentConfiguration"]["maximumPercent"], 100);
    assert_eq!(
        service["deploymentConfiguration"]["minimumHealthyPercent"],
        0
    );
    assert_eq!(service["desiredCount"], "${FollowTasks}");
    let allowed = &template()["Parameters"]["FollowTasks"]["AllowedValues"];
    assert_eq!(allowed, &serde_json::json!(["0", "1"]));
    let tasks = resources("AWS::ECS::TaskDefinition");
    let task = &tasks["FollowTaskDefinition"];
    assert_eq!(task["TaskRoleArn"], "${JobRole.Arn}");
    let container = &task["ContainerDefinitions"][0];
    let command: Vec<String> = container["Command"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect();
    assert_eq!(command[0], "follow");
    assert!(
        container["Secrets"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["Name"] == "ETL_WAREHOUSE_URL"),
        "the follow task reads the warehouse URL from the secret"
    );
    for dialect in DIALECTS {
        let env: Vec<(String, String)> = container["Environment"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                let value = e["Value"]["Fn::Sub"]
                    .as_str()
                    .or_else(|| e["Value"].as_str())
                    .unwrap_or_default();
                (
                    e["Name"].as_str().unwrap().to_string(),
                    fill(value, dialect),
                )
            })
            .collect();
        let cli = parse_job("FollowTaskDefinition", &command, &env);
        assert!(matches!(cli.command, cli::Command::Follow(_)), "{dialect}");
    }
}

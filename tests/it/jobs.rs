//! The deployable AWS definitions under jobs/aws are valid JSON of the right shape, every command
//! they run exists in this CLI with those arguments and environment (parsed by the real argument
//! parser), the state machine submits existing job definitions with the parameters they take, the
//! rendered files still hold, and the job role's IAM policy grants exactly the actions of the AWS
//! SDK calls the code makes.

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

fn json_files(dir: &Path) -> Vec<(PathBuf, Value)> {
    let mut out: Vec<(PathBuf, Value)> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            let value = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{} is not JSON: {e}", p.display()));
            (p, value)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(!out.is_empty(), "no JSON files in {}", dir.display());
    out
}

/// The dialects `DIALECT` may name: exactly the CLI's `--dialect` values.
const DIALECTS: [&str; 2] = ["redshift", "postgres"];

/// The value `jobs/aws/render` would put in for a `${NAME}` placeholder, for a sample deployment.
fn placeholder_sample(name: &str, dialect: &str) -> String {
    match name {
        "ACCOUNT_ID" => "123456789012",
        "REGION" => "eu-west-1",
        "IMAGE" => "123456789012.dkr.ecr.eu-west-1.amazonaws.com/dynamo-etl:3f2a9c1",
        "BUCKET" => "acme-etl-staging",
        "PREFIX" => "dynamo-etl",
        "TABLE" => "orders",
        "TARGET" => "dynamodb",
        "JOB_QUEUE" => "dynamo-etl-spot",
        "MAX_READ_UNITS" => "400",
        "WAREHOUSE_SECRET_ARN" => {
            "arn:aws:secretsmanager:eu-west-1:123456789012:secret:dynamo-etl/warehouse-url-AbCdEf"
        }
        "ALERT_TOPIC_ARN" => "arn:aws:sns:eu-west-1:123456789012:dynamo-etl-alerts",
        "GRANT_SELECT_TO" => "group:analysts,role:bi",
        "DIALECT" => dialect,
        "REDSHIFT_CLUSTER_ID" => "etl-cluster",
        "REDSHIFT_DATABASE" => "warehouse",
        "REDSHIFT_WORKGROUP_ID" => "0c1f2e3d-4b5a-6978-8a9b-0c1d2e3f4a5b",
        other => panic!("no sample value for placeholder ${{{other}}}; add one to this test"),
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

fn jobs_in(dir: &Path) -> BTreeMap<String, Job> {
    let mut out = BTreeMap::new();
    for (path, def) in json_files(dir) {
        let name = def["jobDefinitionName"]
            .as_str()
            .unwrap_or_else(|| panic!("{}: no jobDefinitionName", path.display()))
            .to_string();
        assert_eq!(def["type"], "container", "{name}");
        assert_eq!(
            path.file_stem().unwrap().to_str().unwrap(),
            name,
            "{}: the file is named after its job definition",
            path.display()
        );
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
    out
}

/// The job definitions by name.
fn job_definitions() -> BTreeMap<String, Job> {
    jobs_in(&root().join("batch"))
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
                Some("${GRANT_SELECT_TO}"),
                "{name}: the swap must re-grant SELECT to the readers"
            );
        }
        if ["plan", "segment"].contains(&phase) {
            // No warehouse URL here, so the dialect parts are shaped for comes from DIALECT, the
            // same setting that picks phase 3's mode in the state machine.
            assert!(!job.has_warehouse_secret(), "{name}: needs no warehouse");
            assert_eq!(
                job.env_raw("ETL_DIALECT").as_deref(),
                Some("${DIALECT}"),
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
                    Some("${TABLE}"),
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

/// The state machine's definition.
fn state_machine() -> Value {
    let mut files = json_files(&root().join("stepfunctions"));
    assert_eq!(files.len(), 1, "one state machine");
    files.remove(0).1
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
/// with `input` as the state data after the input was merged. Returns the task states visited and
/// the state it ends in.
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
    let states = asl["States"].as_object().expect("States");
    let names: BTreeSet<&String> = states.keys().collect();
    for (name, state) in states {
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
    // The dialect is fixed when the files are rendered, outside what the execution input merges.
    assert_eq!(
        asl["States"]["MergeInput"]["Parameters"]["dialect"], "${DIALECT}",
        "MergeInput sets $.dialect from DIALECT"
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
                    let (job, _) = submitted(&states[t]).expect("a Batch task");
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
    for (name, state) in asl["States"].as_object().unwrap() {
        let Some((job_name, params)) = submitted(state) else {
            continue;
        };
        tasks += 1;
        let job = &jobs[&job_name];
        assert!(
            state["Catch"].is_array(),
            "{name}: a failed phase must be caught and reported"
        );
        assert_eq!(params["JobQueue"], "${JOB_QUEUE}", "{name}");
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
            let state = &asl["States"][t];
            let timeout = timeout_of(&jobs, &submitted(state).unwrap().0) as f64;
            total += timeout;
            for rule in state["Retry"].as_array().into_iter().flatten() {
                let errors = rule["ErrorEquals"].as_array().unwrap();
                if !errors
                    .iter()
                    .any(|e| e == "States.TaskFailed" || e == "States.ALL")
                {
                    continue;
                }
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
        .map(|t| submitted(&asl["States"][t]).expect("a Batch task").0)
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
    let states = asl["States"].as_object().unwrap();
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
            let job = submitted(&asl["States"][t]).unwrap().0;
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
        let upload = tasks
            .iter()
            .find(|t| {
                submitted(&asl["States"][t.as_str()])
                    .unwrap()
                    .0
                    .contains("phase3")
            })
            .unwrap();
        let state = &asl["States"][upload.as_str()];
        let retry = state["Retry"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["ErrorEquals"][0] == "States.TaskFailed")
            .expect("phase 3 retries a failed job");
        total += retry["IntervalSeconds"].as_u64().unwrap()
            + timeout_of(&jobs, &submitted(state).unwrap().0);
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
    let trust: Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("iam/dynamo-etl-redshift-copy.trust.json")).unwrap(),
    )
    .unwrap();
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
    let schedules = json_files(&root().join("events"));
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
            path.display()
        );
        assert!(s["Target"]["Arn"].as_str().is_some(), "{}", path.display());
        assert!(
            s["Target"]["RoleArn"].as_str().is_some(),
            "{}",
            path.display()
        );
    }
    for (path, p) in json_files(&root().join("iam")) {
        assert_eq!(p["Version"], "2012-10-17", "{}", path.display());
        for statement in p["Statement"].as_array().unwrap() {
            let actions = actions_of(statement);
            assert!(
                !actions.iter().any(|a| a == "*" || a.ends_with(":*")),
                "{}: wildcard action in {actions:?}",
                path.display()
            );
            // Some actions have no resource-level permissions at all.
            let resourceless = actions
                .iter()
                .all(|a| ["ecr:GetAuthorizationToken", "batch:DescribeJobs"].contains(&a.as_str()));
            if statement.get("Principal").is_none() && !resourceless {
                assert_ne!(
                    statement["Resource"],
                    "*",
                    "{}: least privilege means named resources",
                    path.display()
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
                            path.display()
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

fn policy(name: &str) -> Value {
    let path = root().join("iam").join(format!("{name}.policy.json"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
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
    let states = policy("dynamo-etl-states");
    let asl = state_machine();
    for (name, state) in asl["States"].as_object().unwrap() {
        if let Some((job, _)) = submitted(state) {
            let arn = format!("arn:aws:batch:${{REGION}}:${{ACCOUNT_ID}}:job-definition/{job}:7");
            assert!(
                allows(&states, "batch:SubmitJob", &arn),
                "{name}: the states role may not submit {job}"
            );
        }
    }
    let scheduler = policy("dynamo-etl-scheduler");
    let mut submitting = 0;
    for (path, schedule) in json_files(&root().join("events")) {
        if !schedule["Target"]["Arn"]
            .as_str()
            .is_some_and(|a| a.ends_with("batch:submitJob"))
        {
            continue;
        }
        submitting += 1;
        let input: Value =
            serde_json::from_str(schedule["Target"]["Input"].as_str().unwrap()).unwrap();
        let job = input["JobDefinition"].as_str().unwrap();
        assert!(
            job_definitions().contains_key(job),
            "{}: {job}",
            path.display()
        );
        let arn = format!("arn:aws:batch:${{REGION}}:${{ACCOUNT_ID}}:job-definition/{job}:3");
        assert!(
            allows(&scheduler, "batch:SubmitJob", &arn),
            "{}: the scheduler may not submit {job}",
            path.display()
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
const OBJECTS: &str = "arn:aws:s3:::${BUCKET}/${PREFIX}/runs/r/part.csv.zst";
const BUCKET: &str = "arn:aws:s3:::${BUCKET}";
const TABLE: &str = "arn:aws:dynamodb:${REGION}:${ACCOUNT_ID}:table/${TABLE}";
const EXPORT_OBJECTS: &str =
    "arn:aws:s3:::${BUCKET}/${PREFIX}/runs/r/export/AWSDynamoDB/01234567890123-abcdefgh/data/x.json.gz";
const CLUSTER_DATABASE: &str =
    "arn:aws:redshift:${REGION}:${ACCOUNT_ID}:dbname:${REDSHIFT_CLUSTER_ID}/${REDSHIFT_DATABASE}";
const WORKGROUP: &str =
    "arn:aws:redshift-serverless:${REGION}:${ACCOUNT_ID}:workgroup/${REDSHIFT_WORKGROUP_ID}";

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
    let job = policy("dynamo-etl-job");
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
        "jobs/aws/iam/dynamo-etl-job.policy.json lacks what the code calls: {missing:#?}"
    );
    assert!(
        unused.is_empty(),
        "jobs/aws/iam/dynamo-etl-job.policy.json grants actions no code calls: {unused:?}"
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

/// The rendered files: `jobs/aws/render` with a sample deployment.
fn render(dialect: Option<&str>, overrides: &[(&str, &str)]) -> (std::process::Output, PathBuf) {
    let out = tempfile::tempdir().unwrap().keep();
    let mut cmd = std::process::Command::new("bash");
    cmd.arg(root().join("render")).arg(&out).env_clear();
    if let Ok(path) = std::env::var("PATH") {
        cmd.env("PATH", path);
    }
    for var in render_vars() {
        if var != "DIALECT" {
            cmd.env(&var, placeholder_sample(&var, "unused"));
        }
    }
    if let Some(d) = dialect {
        cmd.env("DIALECT", d);
    }
    for (k, v) in overrides {
        cmd.env(k, v);
    }
    (cmd.output().expect("bash runs jobs/aws/render"), out)
}

/// The variables `jobs/aws/render` fills in (its `vars=(…)` list).
fn render_vars() -> Vec<String> {
    let text = std::fs::read_to_string(root().join("render")).unwrap();
    let start = text.find("\nvars=(").expect("vars=( in render") + "\nvars=(".len();
    let end = start + text[start..].find(')').unwrap();
    text[start..end]
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

#[test]
fn every_placeholder_is_rendered_and_documented() {
    let vars: BTreeSet<String> = render_vars().into_iter().collect();
    let mut used = BTreeSet::new();
    for dir in ["batch", "stepfunctions", "events", "iam"] {
        for (path, value) in json_files(&root().join(dir)) {
            let found = placeholders(&value.to_string());
            for p in &found {
                assert!(
                    vars.contains(p),
                    "{}: ${{{p}}} is not in render's vars",
                    path.display()
                );
            }
            used.extend(found);
        }
    }
    assert_eq!(
        used, vars,
        "render fills in exactly the placeholders the files use"
    );
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    for v in &vars {
        assert!(
            readme.contains(&format!("| `{v}` |")),
            "jobs/aws/README.md's placeholder table lacks {v}"
        );
    }
}

#[test]
fn rendered_files_are_complete_and_run_with_the_cli() {
    for dialect in [None, Some("postgres"), Some("redshift")] {
        let (output, dir) = render(dialect, &[]);
        assert!(
            output.status.success(),
            "render {dialect:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let expected = dialect.unwrap_or("redshift");
        for sub in ["batch", "stepfunctions", "events", "iam"] {
            for (path, value) in json_files(&dir.join(sub)) {
                assert!(
                    placeholders(&value.to_string()).is_empty(),
                    "{}",
                    path.display()
                );
            }
        }
        let asl = &json_files(&dir.join("stepfunctions"))[0].1;
        assert_eq!(
            asl["States"]["MergeInput"]["Parameters"]["dialect"], expected,
            "{dialect:?}"
        );
        for (name, job) in jobs_in(&dir.join("batch")) {
            let env = job.env("unused");
            parse_job(&name, &job.command, &env);
            if let Some((_, d)) = env.iter().find(|(k, _)| k == "ETL_DIALECT") {
                assert_eq!(d, expected, "{name}");
                assert!(DialectArg::from_str(d, false).is_ok(), "{name}: {d}");
            }
        }
        std::fs::remove_dir_all(dir).unwrap();
    }
}

#[test]
fn render_refuses_a_dialect_or_grantees_the_cli_would_not_take() {
    for (var, value) in [
        ("DIALECT", "mysql"),
        ("GRANT_SELECT_TO", "team:analysts"),
        ("GRANT_SELECT_TO", "group:analysts,,role:bi"),
        ("GRANT_SELECT_TO", ""),
    ] {
        let (output, dir) = render(None, &[(var, value)]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{var}={value:?}: {stderr}");
        assert!(stderr.contains(var), "{var}={value:?}: {stderr}");
        let _ = std::fs::remove_dir_all(dir);
        if var == "GRANT_SELECT_TO" && !value.is_empty() {
            let argv = ["dynamo-etl", "replace", "--grant-select-to", value];
            let err = Cli::try_parse_from(argv)
                .err()
                .unwrap_or_else(|| panic!("the CLI takes {value:?} although render refuses it"));
            assert!(err.to_string().contains("grantee"), "{err}");
        }
    }
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

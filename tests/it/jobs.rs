//! The deployable AWS definitions under jobs/aws are valid JSON of the right shape, and every
//! command they run exists in this CLI with those arguments (parsed by the real argument parser).

use clap::Parser;
use cli::Cli;

/// The binary's own command line, compiled in here so the job definitions are parsed by the real
/// argument parser.
#[allow(dead_code)]
#[path = "../../src/cli/mod.rs"]
mod cli;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("jobs/aws")
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

/// The job definitions by name, with their commands resolved the way Batch does.
fn job_definitions() -> BTreeMap<String, (Value, Vec<String>)> {
    let mut out = BTreeMap::new();
    for (path, def) in json_files(&root().join("batch")) {
        let name = def["jobDefinitionName"]
            .as_str()
            .unwrap_or_else(|| panic!("{}: no jobDefinitionName", path.display()))
            .to_string();
        assert_eq!(def["type"], "container", "{name}");
        let defaults = def["parameters"].as_object().cloned().unwrap_or_default();
        let command: Vec<String> = def["containerProperties"]["command"]
            .as_array()
            .unwrap_or_else(|| panic!("{name}: no command"))
            .iter()
            .map(|a| {
                let a = a.as_str().unwrap();
                match a.strip_prefix("Ref::") {
                    Some(p) => defaults
                        .get(p)
                        .and_then(Value::as_str)
                        .unwrap_or_else(|| sample(p))
                        .to_string(),
                    None => a.to_string(),
                }
            })
            .collect();
        out.insert(name, (def, command));
    }
    out
}

#[test]
fn every_batch_command_parses_with_the_cli() {
    let jobs = job_definitions();
    for phase in [
        "plan",
        "segment",
        "prepare",
        "upload",
        "replace",
        "infer-schema",
    ] {
        assert!(
            jobs.values().any(|(_, c)| c[0] == phase),
            "no job definition runs `{phase}`"
        );
    }
    for (name, (def, command)) in &jobs {
        // Batch passes settings such as ETL_TABLE as environment variables; the parser reads them
        // the same way. Placeholders get a sample value. (The only test here touching the env.)
        let env: Vec<(String, String)> = def["containerProperties"]["environment"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| {
                let value = e["value"].as_str().unwrap_or_default();
                let value = match value {
                    "${MAX_READ_UNITS}" => "400".to_string(),
                    v if v.contains("${") => "sample".to_string(),
                    v => v.to_string(),
                };
                (e["name"].as_str().unwrap().to_string(), value)
            })
            .collect();
        for (k, v) in &env {
            unsafe { std::env::set_var(k, v) };
        }
        let argv = std::iter::once("dynamo-etl".to_string()).chain(command.iter().cloned());
        let parsed = Cli::try_parse_from(argv);
        for (k, _) in &env {
            unsafe { std::env::remove_var(k) };
        }
        if let Err(e) = parsed {
            panic!(
                "{name}: `dynamo-etl {}` is not a valid command line:\n{e}",
                command.join(" ")
            );
        }
    }
}

#[test]
fn array_jobs_take_their_segment_from_batch() {
    for (name, (_, command)) in job_definitions() {
        if ["segment", "upload"].contains(&command[0].as_str()) {
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
}

#[test]
fn retry_strategies_retry_transient_exits_and_never_data_errors() {
    for (name, (def, _)) in job_definitions() {
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
        let env = def["containerProperties"]["environment"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert!(
            !env.iter().any(|e| e["name"] == "ETL_WAREHOUSE_URL"),
            "{name}: the warehouse URL holds a password and must come from `secrets`, not `environment`"
        );
    }
}

#[test]
fn the_state_machine_runs_the_phases_in_order_with_existing_job_definitions() {
    let (_, asl) = json_files(&root().join("stepfunctions")).remove(0);
    let states = asl["States"].as_object().expect("States");
    assert!(
        states.contains_key(asl["StartAt"].as_str().unwrap()),
        "StartAt names a state"
    );
    let names: BTreeSet<&String> = states.keys().collect();
    let jobs = job_definitions();
    let mut batch_order = Vec::new();
    // Walk Next from the start, following the success path.
    let mut current = asl["StartAt"].as_str().unwrap().to_string();
    let mut seen = BTreeSet::new();
    while seen.insert(current.clone()) {
        let state = &states[&current];
        for key in ["Next", "Default"] {
            if let Some(n) = state[key].as_str() {
                assert!(
                    names.contains(&n.to_string()),
                    "{current}.{key} -> unknown state {n}"
                );
            }
        }
        for c in state["Catch"].as_array().into_iter().flatten() {
            let n = c["Next"].as_str().unwrap();
            assert!(
                names.contains(&n.to_string()),
                "{current} catches to unknown state {n}"
            );
        }
        if state["Resource"]
            .as_str()
            .is_some_and(|r| r.contains("batch:submitJob"))
        {
            let params = if state["Parameters"].is_object() {
                &state["Parameters"]
            } else {
                &state["Arguments"]
            };
            let definition = params["JobDefinition"].as_str().expect("JobDefinition");
            let name = definition
                .rsplit('/')
                .next()
                .unwrap()
                .split(':')
                .next()
                .unwrap();
            let (_, command) = jobs
                .get(name)
                .unwrap_or_else(|| panic!("{current} submits unknown job definition {name}"));
            batch_order.push(command[0].clone());
            assert!(
                state["Catch"].is_array(),
                "{current}: a failed phase must be caught and reported"
            );
        }
        let next = match state["Type"].as_str().unwrap() {
            // The success path: the first choice that does not end in a Fail state.
            "Choice" => state["Choices"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|c| c["Next"].as_str())
                .find(|n| states[*n]["Type"] != "Fail")
                .or(state["Default"].as_str()),
            _ => state["Next"].as_str(),
        };
        match next {
            Some(n) => current = n.to_string(),
            None => break,
        }
    }
    assert_eq!(
        batch_order,
        ["plan", "segment", "prepare", "upload", "replace"]
    );
}

#[test]
fn schedules_and_policies_are_well_formed() {
    let schedules = json_files(&root().join("events"));
    assert_eq!(schedules.len(), 2, "a nightly run and a weekly schema job");
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
            let actions: Vec<String> = match &statement["Action"] {
                Value::String(a) => vec![a.clone()],
                Value::Array(a) => a.iter().map(|x| x.as_str().unwrap().to_string()).collect(),
                other => panic!("{}: Action {other}", path.display()),
            };
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
        }
    }
}

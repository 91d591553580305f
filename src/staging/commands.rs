//! The commands the tool tells an operator to run, rendered in one place with every flag that
//! decides what they act on — run id, warehouse target, bucket, prefix — so a command pasted from
//! a message or a runbook acts on the same objects as the run that printed it.

use std::fmt;

use super::layout::DEFAULT_PREFIX;

/// Where suggested commands act.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Runbook {
    pub run_id: String,
    /// The warehouse schema consumers read; `None` when the command that prints is not given one
    /// (phase 1 needs none).
    pub target: Option<String>,
    pub bucket: String,
    pub prefix: String,
}

/// One step an operator may have to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Phase 1 of one segment again.
    RetryPhase1 { total_segments: u32, segment: u32 },
    /// Phase 3 of one segment again.
    RetryPhase3 { segment: u32 },
    /// Phase 2: a fresh staging schema for the run.
    Prepare,
    /// Phase 3 for every segment (one command per segment, `<k>` from 0 to N-1).
    UploadEach { total_segments: u32 },
    /// Phase 3 for every committed segment not loaded yet, in one command.
    UploadAll,
    /// Phase 4: the gate and the swap.
    Replace,
    /// Every remaining phase of the run.
    Run,
    /// Where the run stands.
    Status,
    /// The previous generation back in.
    Rollback,
    /// The fingerprints of the staged generation, table by table and column by column.
    VerifyStaging,
}

/// A rendered command, ready to paste.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command(String);

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Runbook {
    /// The command for `step`.
    pub fn command(&self, step: Step) -> Command {
        let words = match step {
            Step::RetryPhase1 {
                total_segments,
                segment,
            } => format!("retry phase-1 {total_segments} {segment}"),
            Step::RetryPhase3 { segment } => format!("retry phase-3 {segment}"),
            Step::Prepare => "prepare".into(),
            Step::UploadEach { .. } => "upload --segment <k>".into(),
            Step::UploadAll => "upload --all-segments".into(),
            Step::Replace => "replace".into(),
            Step::Run => "run".into(),
            Step::Status => "status".into(),
            Step::Rollback => "rollback".into(),
            Step::VerifyStaging => "verify --generation staging".into(),
        };
        let mut text = format!("dynamo-etl {words}");
        if step != Step::Rollback {
            text.push_str(&format!(" --run-id {}", shell_word(&self.run_id)));
        }
        // Phase 1 never touches the warehouse; every other step acts on the target.
        if !matches!(step, Step::RetryPhase1 { .. }) {
            if let Some(target) = &self.target {
                text.push_str(&format!(" --target {}", shell_word(target)));
            }
        }
        if step != Step::Rollback {
            text.push_str(&format!(" --bucket {}", shell_word(&self.bucket)));
            if self.prefix != DEFAULT_PREFIX {
                text.push_str(&format!(" --prefix {}", shell_word(&self.prefix)));
            }
        }
        if let Step::UploadEach { total_segments } = step {
            text.push_str(&format!(
                "   (for each k from 0 to {})",
                total_segments.saturating_sub(1)
            ));
        }
        Command(text)
    }
}

/// A word the shell passes on unchanged: plain names as they are, anything else single-quoted.
fn shell_word(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-/:=@".contains(&b));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runbook(target: Option<&str>, prefix: &str) -> Runbook {
        Runbook {
            run_id: "2026-11-21".into(),
            target: target.map(str::to_string),
            bucket: "etl-staging".into(),
            prefix: prefix.into(),
        }
    }

    /// The exact text operators paste; a change here is a change to every runbook.
    #[test]
    fn every_suggested_command_names_what_it_acts_on() {
        let r = runbook(Some("platform"), "dynamo-etl");
        let all = [
            Step::RetryPhase1 {
                total_segments: 8,
                segment: 3,
            },
            Step::RetryPhase3 { segment: 3 },
            Step::Prepare,
            Step::UploadEach { total_segments: 8 },
            Step::UploadAll,
            Step::Replace,
            Step::Run,
            Step::Status,
            Step::Rollback,
        ];
        let text: Vec<String> = all.iter().map(|s| r.command(*s).to_string()).collect();
        assert_eq!(
            text,
            [
                "dynamo-etl retry phase-1 8 3 --run-id 2026-11-21 --bucket etl-staging",
                "dynamo-etl retry phase-3 3 --run-id 2026-11-21 --target platform --bucket etl-staging",
                "dynamo-etl prepare --run-id 2026-11-21 --target platform --bucket etl-staging",
                "dynamo-etl upload --segment <k> --run-id 2026-11-21 --target platform --bucket etl-staging   (for each k from 0 to 7)",
                "dynamo-etl upload --all-segments --run-id 2026-11-21 --target platform --bucket etl-staging",
                "dynamo-etl replace --run-id 2026-11-21 --target platform --bucket etl-staging",
                "dynamo-etl run --run-id 2026-11-21 --target platform --bucket etl-staging",
                "dynamo-etl status --run-id 2026-11-21 --target platform --bucket etl-staging",
                "dynamo-etl rollback --target platform",
            ]
        );
    }

    #[test]
    fn a_prefix_other_than_the_default_is_named_and_odd_words_are_quoted() {
        let r = Runbook {
            target: None,
            ..runbook(None, "teams/data eng")
        };
        assert_eq!(
            r.command(Step::Replace).to_string(),
            "dynamo-etl replace --run-id 2026-11-21 --bucket etl-staging --prefix 'teams/data eng'"
        );
        assert_eq!(shell_word("it's"), r"'it'\''s'");
    }
}

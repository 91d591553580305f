//! The one question every error of the library answers: will running the same command again help?
//!
//! Each error type a layer returns implements [`Classify`]. Phases turn them into [`Error`], which
//! keeps that answer through every `context` added on the way up, plus the runbook commands that
//! fix the problem. The command line maps the class to the exit code in exactly one place.

use std::fmt;

/// What to do about a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Transient (throttling, 5xx, a dropped connection) or incomplete work: running the named
    /// command again should succeed. Exit code 1; AWS Batch retries it.
    Retry,
    /// Bad usage, bad configuration, damaged data or a refusal that no retry fixes until something
    /// is changed. Exit code 2; AWS Batch does not retry it.
    Fatal,
}

/// Implemented by every error type the library returns.
pub trait Classify {
    fn class(&self) -> Class;
}

/// A failure on its way to the command line: the classified cause with what was being done, and
/// the commands that fix it.
pub struct Error {
    class: Class,
    inner: anyhow::Error,
    next: Vec<String>,
}

impl Error {
    /// A failure that no retry fixes (usage, configuration, damaged data).
    pub fn fatal(message: impl fmt::Display) -> Error {
        Error::with_class(Class::Fatal, anyhow::anyhow!("{message}"))
    }

    /// A failure that running the named command again should fix.
    pub fn retry(message: impl fmt::Display) -> Error {
        Error::with_class(Class::Retry, anyhow::anyhow!("{message}"))
    }

    fn with_class(class: Class, inner: anyhow::Error) -> Error {
        Error {
            class,
            inner,
            next: Vec::new(),
        }
    }

    /// Adds what was being done when the failure happened; the class is kept.
    pub fn context(self, what: impl fmt::Display + Send + Sync + 'static) -> Error {
        Error {
            inner: self.inner.context(what),
            ..self
        }
    }

    /// Names a command that fixes the failure (shown after the message).
    pub fn next(mut self, command: impl fmt::Display) -> Error {
        let command = command.to_string();
        if !self.next.contains(&command) {
            self.next.push(command);
        }
        self
    }

    /// Changes the class, for the rare caller that knows better than the cause (a refusal that
    /// the caller can fix by itself, say).
    pub fn reclassify(self, class: Class) -> Error {
        Error { class, ..self }
    }

    pub fn class(&self) -> Class {
        self.class
    }

    /// The commands that fix the failure, in the order they should run.
    pub fn next_steps(&self) -> &[String] {
        &self.next
    }

    /// The cause chain on one line: `what failed: because: because`.
    pub fn chain(&self) -> String {
        format!("{:#}", self.inner)
    }

    /// Whether any error in the chain is of type `E` (for tests and callers that must tell
    /// causes apart).
    pub fn is<E: std::error::Error + Send + Sync + 'static>(&self) -> bool {
        self.inner.chain().any(|c| c.is::<E>())
    }
}

impl<E> From<E> for Error
where
    E: Classify + std::error::Error + Send + Sync + 'static,
{
    fn from(e: E) -> Error {
        Error::with_class(e.class(), anyhow::Error::new(e))
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.chain())?;
        for step in &self.next {
            write!(f, "\n  run: {step}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} error: {self}", self.class)
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("throttled")]
    struct Throttled;
    impl Classify for Throttled {
        fn class(&self) -> Class {
            Class::Retry
        }
    }

    #[test]
    fn the_class_survives_context_and_commands_are_listed_once() {
        let e = Error::from(Throttled)
            .context("reading the plan")
            .next("dynamo-etl retry phase-3 1")
            .next("dynamo-etl retry phase-3 1");
        assert_eq!(e.class(), Class::Retry);
        assert_eq!(e.chain(), "reading the plan: throttled");
        assert_eq!(e.next_steps(), ["dynamo-etl retry phase-3 1"]);
        assert!(e.is::<Throttled>());
        assert_eq!(
            e.to_string(),
            "reading the plan: throttled\n  run: dynamo-etl retry phase-3 1"
        );
        assert_eq!(Error::fatal("bad flag").class(), Class::Fatal);
    }
}

//! A report that reaches the operator in full even when the operation failed.

use crate::error::{Error, Result};

/// What an operation found, and the failure it decided that means, if any.
///
/// Fan-outs and checks show every row, the bad ones too, and then exit non-zero. The
/// operation decides that exit here, next to the data; the handler renders `report`
/// and returns [`Reported::outcome`], so it never inspects the rows to pick a code.
#[derive(Debug)]
#[must_use = "the failure decides the exit code: return `outcome()` once the report is rendered"]
pub struct Reported<T> {
    pub report: T,
    pub failure: Option<Error>,
}

impl<T> Reported<T> {
    pub fn new(report: T, failure: Option<Error>) -> Self {
        Reported { report, failure }
    }

    /// What the command ends with once the report is shown: the operation's verdict.
    pub fn outcome(self) -> Result<()> {
        self.failure.map_or(Ok(()), Err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_outcome_is_the_failure_the_operation_decided() {
        assert!(Reported::new(3, None).outcome().is_ok());
        let failed = Reported::new(3, Some(Error::partial("1 of 3 failed")));
        assert_eq!(failed.report, 3);
        assert_eq!(failed.outcome().unwrap_err().exit_code(), 8);
    }
}

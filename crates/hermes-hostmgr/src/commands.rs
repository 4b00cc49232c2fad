//! What the host backends share around their commands: run one and name its
//! failure by the profile's service, and apply a plan the same way.

use hermes_core::name::ProfileName;
use hermes_core::service::ServiceError;

use crate::plan::Plan;
use crate::runner::{CommandRunner, Output};

pub(crate) trait Commands {
    fn runner(&self) -> &dyn CommandRunner;
    /// The error for `argv`, run for `profile`'s service, that ended as `out`.
    fn failure(&self, profile: &ProfileName, argv: &[String], out: &Output) -> ServiceError;

    fn run_checked(&self, profile: &ProfileName, argv: &[String]) -> Result<(), ServiceError> {
        let out = self.runner().run(argv)?;
        if out.success() {
            Ok(())
        } else {
            Err(self.failure(profile, argv, &out))
        }
    }

    fn apply(&self, profile: &ProfileName, plan: &Plan) -> Result<(), ServiceError> {
        plan.apply(self.runner(), &|argv, out| self.failure(profile, argv, out))
    }
}

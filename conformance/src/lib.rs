//! `nms-conformance`: checks a live OMA REST NMS server black-box over HTTP against the SCR
//! items of the CPM Message Storage Server (OMA-TS-CPM_Message_Storage_Using_RESTful_API
//! Appendix B.2), and against the CPM binding's own semantics (`CPM-` items: CPIM, IMDN, call
//! log and SMS objects, CPM flags, correlation, the session-object rules), and reports one
//! line per item:
//!
//! ```text
//! PASS REST-NMS-OBJECTS-S-002-M  upload an object with payload into an identified folder
//! FAIL REST-NMS-AOBJECT-S-003-M delete an object (DELETE): expected 204, got DELETE ... -> 500: ...
//! 32 passed, 1 failed
//! ```
//!
//! All work happens in a folder `/conformance-<random>` created under the box's root and
//! deleted (recursively) at the end, so the box may hold other content. Subscriptions and
//! notification channels an item makes are deleted right after that item. A run succeeds when
//! every selected mandatory item passed (optional items are reported but do not count) and
//! the run folder was removed.
//!
//! The command-line runner (`src/main.rs`) and the project's own test suite both drive
//! [`run`].

pub mod cases;
pub mod http;
pub mod xml;

use std::future::Future;
use std::time::Duration;

use crate::cases::Ctx;
pub use crate::cases::{CASES, Case};
pub use crate::http::Format;
use crate::http::{Fail, Http};

/// Where and as whom to run.
#[derive(Clone, Debug)]
pub struct Options {
    /// Scheme, host, port and any path prefix before `/nms/v1`.
    pub base_url: String,
    /// Login (HTTP Basic) that may act on the box.
    pub user: String,
    pub password: String,
    /// A bearer token to present instead of the Basic credentials (items that check refusals
    /// of wrong credentials still use Basic).
    pub bearer: Option<String>,
    /// Box address (`tel:+12125551212`); percent-encoded in URLs.
    pub box_id: String,
    /// Store name (`base`).
    pub store: String,
    /// Timeout of each HTTP request. Long polls of notification channels are requests too:
    /// it should exceed the server's long-poll timeout.
    pub timeout: Duration,
    /// Notification Channel API root of the box's user, `{serverRoot}/notificationchannel/v1/{userId}`;
    /// `None`: `{base_url}/notificationchannel/v1/{box_id percent-encoded}` (same server root as
    /// the NMS API, the box address as `userId`).
    pub channel_root: Option<String>,
    /// The format of every document the runner sends and expects (JSON, or the XML binding).
    pub format: Format,
}

/// The items whose id contains one of `only` (all items when `only` is empty).
pub fn select(only: &[String]) -> Vec<&'static Case> {
    CASES.iter().filter(|c| only.is_empty() || only.iter().any(|o| c.id.contains(o.as_str()))).collect()
}

/// The result of one item.
#[derive(Debug)]
pub struct Outcome {
    pub id: &'static str,
    pub description: &'static str,
    pub mandatory: bool,
    /// `Err(reason)`: one line naming the request that went wrong.
    pub result: Result<(), String>,
}

impl Outcome {
    /// The report line: `PASS id  description` or `FAIL id description: reason`.
    pub fn line(&self) -> String {
        match &self.result {
            Ok(()) => format!("PASS {}  {}", self.id, self.description),
            Err(reason) if self.mandatory => format!("FAIL {} {}: {reason}", self.id, self.description),
            Err(reason) => format!(
                "FAIL {} {}: {reason} (optional item; does not affect the exit status)",
                self.id, self.description
            ),
        }
    }
}

/// What a run found.
#[derive(Debug, Default)]
pub struct Report {
    pub outcomes: Vec<Outcome>,
    /// Why the setup (root discovery, run folder creation) failed; no item ran then.
    pub setup_error: Option<String>,
    /// Why the run folder (or a subscription or channel the runner made) could not be
    /// removed at the end.
    pub cleanup_error: Option<String>,
    /// The run was interrupted before every item ran.
    pub interrupted: bool,
    /// `{base-url}/nms/v1/{store}/{box}` and the path of the run folder (after setup).
    pub base: String,
    pub run_folder: String,
}

impl Report {
    pub fn passed(&self) -> usize {
        self.outcomes.iter().filter(|o| o.result.is_ok()).count()
    }

    pub fn failed(&self) -> usize {
        self.outcomes.len() - self.passed()
    }

    /// The closing line: `N passed, N failed`.
    pub fn summary(&self) -> String {
        format!("{} passed, {} failed", self.passed(), self.failed())
    }

    /// Every mandatory item passed, the setup worked, the run folder is gone, and the run
    /// was not interrupted.
    pub fn success(&self) -> bool {
        self.setup_error.is_none()
            && self.cleanup_error.is_none()
            && !self.interrupted
            && self.outcomes.iter().all(|o| o.result.is_ok() || !o.mandatory)
    }
}

/// Run `cases` against the server of `opts`, handing each outcome to `on_outcome` as soon
/// as it is known. `interrupt` completing stops the run before the next item (the run folder
/// is still removed).
pub async fn run(
    opts: &Options,
    cases: &[&'static Case],
    interrupt: impl Future<Output = ()>,
    mut on_outcome: impl FnMut(&Outcome),
) -> Report {
    let mut report = Report::default();
    let mut record = |report: &mut Report, case: &Case, result: Result<(), Fail>| {
        let outcome = Outcome {
            id: case.id,
            description: case.description,
            mandatory: case.mandatory,
            result: result.map_err(|e| e.to_string().replace(['\r', '\n'], " ")),
        };
        on_outcome(&outcome);
        report.outcomes.push(outcome);
    };
    let setup = async {
        let http = Http::new(&opts.user, &opts.password, opts.timeout)?
            .with_bearer(opts.bearer.clone())
            .with_format(opts.format);
        Ctx::setup(http, opts).await
    };
    let ctx = match setup.await {
        Ok(ctx) => ctx,
        Err(e) => {
            report.setup_error = Some(e.to_string());
            for case in cases {
                record(&mut report, case, Err(Fail("not run: the setup failed".into())));
            }
            return report;
        }
    };
    report.base = ctx.base.clone();
    report.run_folder = ctx.run.path.clone();

    let mut interrupt = std::pin::pin!(interrupt);
    for case in cases {
        let result = tokio::select! {
            r = (case.run)(&ctx) => r,
            _ = &mut interrupt => {
                report.interrupted = true;
                break;
            }
        };
        // The subscriptions and channels the item made go now, whatever its outcome; what
        // cannot be deleted stays listed for the final sweep.
        let result = match (result, ctx.sweep().await) {
            (Ok(()), Err(e)) => Err(Fail(format!("cleaning up after the item: {e}"))),
            (r, _) => r,
        };
        record(&mut report, case, result);
    }
    let mut problems = Vec::new();
    if let Err(e) = ctx.sweep().await {
        problems.push(e.to_string());
    }
    if let Err(e) = ctx.cleanup().await {
        problems.push(format!("could not delete the run folder {} ({}): {e}", ctx.run.path, ctx.run.url));
    }
    if !problems.is_empty() {
        report.cleanup_error = Some(problems.join("; "));
    }
    report
}

//! The command-line runner: `nms-conformance --base-url URL --user U --password P --box ADDRESS`
//! (or `--token JWT` instead of the Basic credentials).
//! Prints one line per SCR item and a closing `N passed, N failed`; exits 0 when every
//! mandatory item passed, 1 when one failed, the setup failed or the run folder (or a
//! subscription or channel it made) could not be removed, 2 on bad usage, 130 when
//! interrupted. See the library documentation.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use nms_conformance::{Format, Options, run, select};

#[derive(Parser, Debug)]
#[command(version, about = "Black-box conformance runner for OMA REST NMS servers (CPM binding SCR items)")]
struct Args {
    /// Server base URL (scheme, host, port and any path prefix before `/nms/v1`).
    #[arg(long, env = "NMS_BASE_URL", required_unless_present = "list")]
    base_url: Option<String>,
    /// Login (HTTP Basic) that may act on the box.
    #[arg(long, env = "NMS_USER", required_unless_present_any = ["list", "token"])]
    user: Option<String>,
    /// Password of the login.
    #[arg(long, env = "NMS_PASSWORD", hide_env_values = true, required_unless_present_any = ["list", "token"])]
    password: Option<String>,
    /// A bearer token (an OIDC ID token or JWT access token) to present instead of Basic.
    #[arg(long, env = "NMS_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Box address (e.g. tel:+12125551212); it is percent-encoded in URLs.
    #[arg(long = "box", env = "NMS_BOX", required_unless_present = "list")]
    box_id: Option<String>,
    /// Store name.
    #[arg(long, env = "NMS_STORE", default_value = "base")]
    store: String,
    /// Timeout of each HTTP request, in seconds (long polls included: make it exceed the
    /// server's long-poll timeout).
    #[arg(long, default_value_t = 60)]
    timeout_secs: u64,
    /// Notification Channel API root of the box's user, `{serverRoot}/notificationchannel/v1/{userId}`
    /// [default: {base-url}/notificationchannel/v1/{box, percent-encoded}].
    #[arg(long, env = "NMS_CHANNEL_ROOT")]
    channel_root: Option<String>,
    /// Exchange every document in the OMA XML binding (`application/xml` requests and
    /// `Accept: application/xml`) instead of JSON.
    #[arg(long)]
    xml: bool,
    /// Run only the items whose id contains this text (repeatable).
    #[arg(long)]
    only: Vec<String>,
    /// List the items and exit.
    #[arg(long)]
    list: bool,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let selected = select(&args.only);
    if args.list {
        for c in &selected {
            println!("{} {} {}", c.id, if c.mandatory { "mandatory" } else { "optional " }, c.description);
        }
        return ExitCode::SUCCESS;
    }
    if selected.is_empty() {
        eprintln!("nms-conformance: no SCR item matches --only {:?}", args.only);
        return ExitCode::from(2);
    }
    let (Some(base_url), Some(box_id)) = (args.base_url, args.box_id) else {
        eprintln!("nms-conformance: --base-url and --box are required");
        return ExitCode::from(2);
    };
    if args.token.is_none() && (args.user.is_none() || args.password.is_none()) {
        eprintln!("nms-conformance: --user and --password (or --token) are required");
        return ExitCode::from(2);
    }
    let opts = Options {
        base_url,
        user: args.user.unwrap_or_default(),
        password: args.password.unwrap_or_default(),
        bearer: args.token,
        box_id,
        store: args.store,
        timeout: Duration::from_secs(args.timeout_secs),
        channel_root: args.channel_root,
        format: if args.xml { Format::Xml } else { Format::Json },
    };
    let interrupt = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    let report = run(&opts, &selected, interrupt, |o| {
        println!("{}", o.line());
        let _ = std::io::stdout().flush();
    })
    .await;
    if let Some(e) = &report.setup_error {
        eprintln!("nms-conformance: setup failed: {e}");
    } else {
        eprintln!("nms-conformance: ran against {} in {}", report.base, report.run_folder);
    }
    if let Some(e) = &report.cleanup_error {
        eprintln!("nms-conformance: {e}");
    }
    println!("{}", report.summary());
    if report.interrupted {
        eprintln!("nms-conformance: interrupted");
        return ExitCode::from(130);
    }
    if report.success() { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

//! The `cpm-nms` command: serve, print the configuration, migrate, manage accounts and
//! boxes, sweep.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use cpm_nms::auth::{digest, digest_algorithms, hash_password};
use cpm_nms::config::{Overrides, Settings};
use cpm_nms::error::Error;
use cpm_nms::startup::{Application, build_admin_nms, open_store};

#[derive(Parser)]
#[command(name = "cpm-nms", version, about = "CPM Network Message Store (OMA REST NMS)")]
struct Cli {
    /// TOML configuration file.
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Data directory (database, blobs, generated keys). Default: ./nms-data
    #[arg(long, global = true, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP server (applies migrations first).
    Serve {
        /// Address to listen on. Default: 127.0.0.1:8080
        #[arg(long, value_name = "ADDR")]
        listen: Option<String>,
        /// Absolute base URL clients see. Default: http://{listen address}
        #[arg(long, value_name = "URL")]
        public_url: Option<String>,
    },
    /// Print the effective configuration (secrets redacted).
    Config,
    /// Apply database migrations and exit.
    Migrate,
    /// Manage logins.
    #[command(subcommand)]
    Account(AccountCommand),
    /// Delete unreferenced payload blobs and temporaries older than the grace period, and
    /// temporaries of processes that are gone, once.
    Sweep {
        /// Grace period in seconds instead of `storage.blob_grace_secs`. A grace shorter than
        /// the longest upload is safe only while no server writes to the same data (0: every
        /// unreferenced blob and every pin goes, which cleans up after a crash at once).
        #[arg(long, value_name = "SECS")]
        grace_secs: Option<u64>,
    },
    /// Administer boxes.
    #[command(subcommand, name = "box")]
    Box(BoxCommand),
    /// Ask a running server whether it is ready (its `/readyz`); exit 0 if it answers 200
    /// within 5 seconds. For container health checks: the image has no curl.
    Ready {
        /// The readiness URL.
        #[arg(long, value_name = "URL", default_value = "http://127.0.0.1:8080/readyz")]
        url: String,
    },
}

#[derive(Subcommand)]
enum BoxCommand {
    /// Empty a box (every object and folder but its root) and give it a new validity:
    /// every client's restart token of it then replays as resetBox.
    Reset {
        /// The box address (e.g. tel:+12125551212).
        address: String,
        /// Store name. Default: the first of `nms.stores`.
        #[arg(long)]
        store: Option<String>,
    },
}

#[derive(Subcommand)]
enum AccountCommand {
    /// Create a login bound to one or more boxes (each box is provisioned if new).
    Add(AddArgs),
    /// List logins and their boxes.
    List,
    /// Remove a login (its boxes and their contents stay).
    Remove {
        #[arg(long)]
        name: String,
    },
}

#[derive(Args)]
struct AddArgs {
    /// Login name.
    #[arg(long)]
    name: String,
    /// Box address, e.g. tel:+12125551212 (repeatable).
    #[arg(long = "box", value_name = "ADDRESS", required = true)]
    boxes: Vec<String>,
    /// Store the boxes belong to. Default: the first configured store.
    #[arg(long)]
    store: Option<String>,
    /// A CPM Participating Function account: may act on any box of the store.
    #[arg(long)]
    service: bool,
    /// The password.
    #[arg(long, conflicts_with = "password_stdin", required_unless_present = "password_stdin")]
    password: Option<String>,
    /// Read the password from standard input (first line).
    #[arg(long)]
    password_stdin: bool,
    /// Also store the HTTP Digest H(A1) values (SHA-256 and MD5) for the configured realm,
    /// even if `auth.digest.enabled` is off. While it is on they are stored anyway, for the
    /// configured `auth.digest.algorithms`.
    #[arg(long, conflicts_with = "no_digest")]
    digest: bool,
    /// Store no Digest values even if `auth.digest.enabled` is on (the account then has
    /// Basic only).
    #[arg(long)]
    no_digest: bool,
}

fn main() -> ExitCode {
    cpm_nms::telemetry::init();
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<(), Box<dyn std::error::Error>> {
    let mut overrides = Overrides { data_dir: cli.data_dir.clone(), ..Default::default() };
    if let Command::Serve { listen, public_url } = &cli.command {
        overrides.listen = listen.clone();
        overrides.public_url = public_url.clone();
    }
    let settings = Settings::load(cli.config.as_deref(), &overrides)?;
    match cli.command {
        Command::Serve { .. } => {
            let app = Application::build(settings).await?;
            tracing::info!(
                url = %app.public_url(),
                port = app.port(),
                metrics_port = app.metrics_port(),
                "cpm-nms listening"
            );
            app.run_until_stopped().await?;
        }
        Command::Config => print!("{}", settings.to_redacted_toml()),
        Command::Migrate => {
            open_store(&settings).await?;
            println!("migrations applied to {}", settings.database_url());
        }
        Command::Sweep { grace_secs } => {
            let nms = build_admin_nms(&settings).await?;
            let grace = std::time::Duration::from_secs(grace_secs.unwrap_or(settings.storage.blob_grace_secs));
            let r = nms.blobs().sweep(grace).await?;
            println!(
                "deleted {} blobs and {} temporaries; dropped {} stale pins and deletion marks",
                r.blobs_deleted, r.temporaries_deleted, r.stale_marks_dropped
            );
        }
        Command::Account(cmd) => account(cmd, &settings).await?,
        Command::Ready { url } => ready(&url).await?,
        Command::Box(BoxCommand::Reset { address, store }) => {
            let nms = build_admin_nms(&settings).await?;
            let store = store.or_else(|| settings.nms.stores.first().cloned()).unwrap_or_default();
            let Some(b) = nms.find_box(&store, &address).await? else {
                return Err(format!("no box {address} in store {store}").into());
            };
            let b = nms.reset_box(&b).await?;
            println!("box {address} in store {store} reset (validity {}, modseq {})", b.validity, b.modseq);
        }
    }
    Ok(())
}

async fn ready(url: &str) -> Result<(), Box<dyn std::error::Error>> {
    let client = reqwest::Client::builder().timeout(std::time::Duration::from_secs(5)).build()?;
    let res = client.get(url).send().await?;
    let status = res.status();
    let body = res.text().await.unwrap_or_default();
    if status != reqwest::StatusCode::OK {
        return Err(format!("{url} answered {status}: {body}").into());
    }
    println!("{body}");
    Ok(())
}

async fn account(cmd: AccountCommand, settings: &Settings) -> Result<(), Box<dyn std::error::Error>> {
    let nms = build_admin_nms(settings).await?;
    match cmd {
        AccountCommand::Add(args) => {
            let password = match (args.password, args.password_stdin) {
                (Some(p), _) => p,
                (None, _) => {
                    let mut s = String::new();
                    std::io::stdin().read_to_string(&mut s)?;
                    s.lines().next().unwrap_or_default().to_string()
                }
            };
            if password.is_empty() {
                return Err("the password must not be empty".into());
            }
            let store = args.store.unwrap_or_else(|| settings.nms.stores[0].clone());
            let mut pairs = Vec::new();
            for address in &args.boxes {
                nms.provision_box(&store, address).await?;
                pairs.push((store.clone(), address.clone()));
            }
            let hash = hash_password(&password)?;
            let digest_algs = if args.no_digest {
                Vec::new()
            } else if settings.auth.digest.enabled {
                digest_algorithms(&settings.auth.digest.algorithms)?
            } else if args.digest {
                vec![digest::Algorithm::Sha256, digest::Algorithm::Md5]
            } else {
                Vec::new()
            };
            match nms.store().create_account(&args.name, &hash, args.service, &pairs).await {
                Ok(a) => {
                    if !digest_algs.is_empty() {
                        let secrets = digest::secrets(&a.name, &settings.auth.realm, &password, &digest_algs);
                        nms.store().set_account_digest(&a.name, Some(&secrets)).await?;
                    }
                    println!(
                        "account {} created{} with boxes: {}{}",
                        a.name,
                        if a.is_service { " (service)" } else { "" },
                        args.boxes.join(", "),
                        if digest_algs.is_empty() { "" } else { " (Digest enabled)" }
                    )
                }
                Err(Error::DuplicateName { .. }) => return Err(format!("account {} already exists", args.name).into()),
                Err(e) => return Err(e.into()),
            }
        }
        AccountCommand::List => {
            for a in nms.store().list_accounts().await? {
                let boxes: Vec<String> = a.boxes.iter().map(|(s, b)| format!("{s}/{b}")).collect();
                println!("{}\t{}\t{}", a.name, if a.is_service { "service" } else { "user" }, boxes.join(","));
            }
        }
        AccountCommand::Remove { name } => {
            if nms.store().remove_account(&name).await? {
                println!("account {name} removed");
            } else {
                return Err(format!("no account named {name}").into());
            }
        }
    }
    Ok(())
}

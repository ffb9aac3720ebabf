//! The command line: `serve`, `validate`, `import`, `export`, `run`, `token`, `secret`.
//! Exit codes: 0 ok, 1 failure, 2 usage.

use std::{io::Read, path::PathBuf};

use clap::{Parser, Subcommand};
use flows_engine::{ValidateCx, validate::prepare};
use serde_json::Value;

use crate::{
    app::open_offline,
    config::{DbArgs, ServeArgs},
    flows::{self, OnConflict},
    ingest::{Started, start_run},
    store::runs::step_json,
};

#[derive(Debug, Parser)]
#[command(name = "hookflow", version, about = "Durable webhooks into flows of steps.", long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server: webhook ingress, API, workers.
    Serve(Box<ServeArgs>),
    /// Check flow files; prints every problem with its location and exits 1 if any.
    Validate {
        /// Flow files or directories of them.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Import flow files into the database.
    Import {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// What to do with flows that already exist.
        #[arg(long, value_enum, default_value = "replace")]
        on_conflict: OnConflict,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Print one flow, or a bundle of all flows, as JSON.
    Export {
        /// A flow name; all flows when omitted.
        name: Option<String>,
        /// Write to this file instead of standard output.
        #[arg(short, long)]
        output: Option<PathBuf>,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Run a flow once (a stored flow by name, or a flow file) and print each step's output.
    Run {
        /// A flow name, or a path to a flow file (run against a temporary database).
        flow: String,
        /// The trigger body: JSON, or @file.
        #[arg(long, default_value = "{}")]
        payload: String,
        /// Let http steps reach loopback and private addresses.
        #[arg(long, env = "HOOKFLOW_ALLOW_PRIVATE_TARGETS")]
        allow_private_targets: bool,
        #[command(flatten)]
        db: DbArgs,
    },
    /// API tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Users of the web UI.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Secrets referenced as {{ secrets.NAME }}.
    Secret {
        #[command(subcommand)]
        command: SecretCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create an API token and print it (it is shown only once).
    Create {
        name: String,
        #[command(flatten)]
        db: DbArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user, or set a new password; the password is read from standard input.
    Add {
        name: String,
        #[command(flatten)]
        db: DbArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum SecretCommand {
    /// Set a secret; the value is read from standard input.
    Set {
        name: String,
        #[command(flatten)]
        db: DbArgs,
    },
}

/// Run a command; `Ok(false)` means it ran and failed (exit 1).
pub async fn dispatch(cli: Cli) -> anyhow::Result<bool> {
    match cli.command {
        Command::Serve(args) => crate::app::run(*args).await.map(|()| true),
        Command::Validate { files } => validate(&files),
        Command::Import {
            files,
            on_conflict,
            db,
        } => {
            let app = open_offline(db, false).await?;
            let mut flows_list = Vec::new();
            for f in &files {
                let doc = flows::read_flow_files(f)?;
                flows_list.extend(flows::split_import(doc)?.into_iter().map(|(_, d)| d));
            }
            match flows::import(
                &app,
                serde_json::json!({"hookflow": 1, "flows": flows_list}),
                on_conflict,
            )
            .await
            {
                Ok(report) => {
                    println!("{}", serde_json::to_string_pretty(&report)?);
                    Ok(true)
                }
                Err(crate::error::Error::Invalid(issues)) => {
                    for i in issues {
                        eprintln!("{i}");
                    }
                    Ok(false)
                }
                Err(e) => Err(e.into()),
            }
        }
        Command::Export { name, output, db } => {
            let store = db.open().await?;
            let doc = match name {
                Some(n) => {
                    let f = store
                        .get_flow(&n)
                        .await?
                        .ok_or_else(|| anyhow::anyhow!("no flow named '{n}'"))?;
                    serde_json::from_str(&f.definition)?
                }
                None => flows::export_all(&store).await?,
            };
            let text = serde_json::to_string_pretty(&doc)? + "\n";
            match output {
                Some(path) => std::fs::write(&path, text)
                    .map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))?,
                None => print!("{text}"),
            }
            Ok(true)
        }
        Command::Run {
            flow,
            payload,
            allow_private_targets,
            db,
        } => run_once(&flow, &payload, allow_private_targets, db).await,
        Command::Token {
            command: TokenCommand::Create { name, db },
        } => {
            let store = db.open().await?;
            println!("{}", store.create_token(&name).await?);
            Ok(true)
        }
        Command::User {
            command: UserCommand::Add { name, db },
        } => {
            let password = read_stdin_value()?;
            let store = db.open().await?;
            store.set_user(&name, &password).await?;
            eprintln!("user '{name}' can log in");
            Ok(true)
        }
        Command::Secret {
            command: SecretCommand::Set { name, db },
        } => {
            let value = read_stdin_value()?;
            let value = value.as_str();
            let store = db.open().await?;
            store.set_secret(&db.master_key()?, &name, value).await?;
            eprintln!("secret '{name}' set");
            Ok(true)
        }
    }
}

/// A value from standard input, without its final newline.
fn read_stdin_value() -> anyhow::Result<String> {
    let mut value = String::new();
    std::io::stdin().read_to_string(&mut value)?;
    let trimmed = value
        .strip_suffix('\n')
        .map(|v| v.strip_suffix('\r').unwrap_or(v))
        .unwrap_or(&value);
    Ok(trimmed.to_string())
}

fn validate(files: &[PathBuf]) -> anyhow::Result<bool> {
    let registry = connectors::registry(connectors::HttpOptions::default());
    let cx = ValidateCx {
        registry: &registry,
        secret_exists: None,
    };
    let mut ok = true;
    for path in files {
        let doc = match flows::read_flow_files(path) {
            Ok(d) => d,
            Err(e) => {
                eprintln!("{e}");
                ok = false;
                continue;
            }
        };
        for (at, flow) in flows::split_import(doc)? {
            let label = flow
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("?")
                .to_string();
            match prepare(&flow, &cx) {
                Ok(_) => println!("ok: {label} ({})", path.display()),
                Err(issues) => {
                    ok = false;
                    eprintln!(
                        "invalid: {label} ({}{})",
                        path.display(),
                        if at.is_empty() {
                            String::new()
                        } else {
                            format!(" {at}")
                        }
                    );
                    for i in issues {
                        eprintln!("  {i}");
                    }
                }
            }
        }
    }
    Ok(ok)
}

async fn run_once(
    flow: &str,
    payload: &str,
    allow_private: bool,
    mut db: DbArgs,
) -> anyhow::Result<bool> {
    let payload: Value = match payload.strip_prefix('@') {
        Some(file) => serde_json::from_str(
            &std::fs::read_to_string(file).map_err(|e| anyhow::anyhow!("reading {file}: {e}"))?,
        )?,
        None => serde_json::from_str(payload)
            .map_err(|e| anyhow::anyhow!("--payload is not valid JSON: {e}"))?,
    };
    let path = PathBuf::from(flow);
    let _tmp;
    let name = if path.is_file() {
        // A flow file runs against a throwaway database, so nothing is left behind.
        let dir = tempfile_dir()?;
        db.database_url = None;
        db.data_dir = dir.clone();
        _tmp = TempDir(dir);
        let app = open_offline(db.clone(), allow_private).await?;
        let doc = flows::read_flow_files(&path)?;
        flows::import(&app, doc, OnConflict::Replace).await?;
        app.catalog
            .names()
            .into_iter()
            .next()
            .ok_or_else(|| anyhow::anyhow!("{} holds no flow", path.display()))?
    } else {
        flow.to_string()
    };
    let app = open_offline(db, allow_private).await?;
    let (version, _) = app
        .catalog
        .current(&name)
        .ok_or_else(|| anyhow::anyhow!("no flow named '{name}'"))?;
    let run_id = start_run(&app, &name, version, Started::manual(payload)).await?;
    let run = app
        .store
        .claim_run(&run_id, &app.worker_id, crate::worker::LEASE_MS)
        .await?
        .ok_or_else(|| anyhow::anyhow!("run vanished"))?;
    app.handoff.claimed(&run.flow);
    let slot = app.handoff.slot(run.flow.clone());
    crate::worker::execute_claimed(&app, crate::handoff::RunInHand::stored(run, false), slot).await;
    let run = app
        .store
        .get_run(&run_id)
        .await?
        .ok_or_else(|| anyhow::anyhow!("run vanished"))?;
    for step in app.store.run_steps(&run).await? {
        let s = step_json(&step);
        println!(
            "── {} [{}] {} ms",
            step.step_id, step.status, step.duration_ms
        );
        if let Some(err) = &step.error {
            println!("error: {err}");
        }
        println!("{}", serde_json::to_string_pretty(&s["output"])?);
    }
    println!(
        "run {run_id}: {}{}",
        run.status,
        run.error.map(|e| format!(" ({e})")).unwrap_or_default()
    );
    Ok(run.status == "succeeded" || run.status == "filtered")
}

fn tempfile_dir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(flows_engine::ids::new_id("hookflow-run"));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

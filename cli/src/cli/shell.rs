//! `wasqlite shell`: an interactive SQL shell on one awake actor.
//!
//! On a terminal it edits lines and keeps history (rustyline, history in
//! `~/.wasqlite_history`). Otherwise it reads stdin line by line without
//! prompts, so scripts can be piped in. A statement runs once the text
//! typed so far is complete (`sqlite3_complete`); lines starting with `.`
//! at the start of a statement are meta commands. Errors are reported and
//! the shell goes on; piped input that hit an error exits 1 at the end.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result};
use clap::Args;
use rustyline::DefaultEditor;
use rustyline::error::ReadlineError;
use tokio::runtime::Runtime;
use wasqlite::{Actor, InterruptHandle, Value};

use super::{StoreArg, TimeoutArg, actor_id, format, sql};

#[derive(Args, Debug)]
pub(crate) struct ShellArgs {
    /// The actor to open (A-Z a-z 0-9 . _ : -).
    #[arg(long, value_name = "ID")]
    actor: String,
    #[command(flatten)]
    store: StoreArg,
    #[command(flatten)]
    timeout: TimeoutArg,
}

const HELP: &str = "\
.help             this text
.tables           list tables and views
.schema [TABLE]   show CREATE statements, of one table or all
.quit, .exit      leave the shell
SQL statements end with ';' and may span lines.";

/// Where lines come from.
enum Input {
    Terminal { editor: Box<DefaultEditor>, history: Option<PathBuf> },
    Piped(std::io::StdinLock<'static>),
}

impl Input {
    fn open() -> Input {
        if std::io::stdin().is_terminal()
            && let Ok(mut editor) = DefaultEditor::new()
        {
            let history = std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".wasqlite_history"));
            if let Some(path) = &history {
                let _ = editor.load_history(path);
            }
            return Input::Terminal { editor: Box::new(editor), history };
        }
        Input::Piped(std::io::stdin().lock())
    }

    fn interactive(&self) -> bool {
        matches!(self, Input::Terminal { .. })
    }

    /// The next line, or `None` at end of input. Ctrl-C gives an empty
    /// line marked as interrupted.
    fn line(&mut self, prompt: &str) -> Result<Option<Line>> {
        match self {
            Input::Terminal { editor, .. } => match editor.readline(prompt) {
                Ok(line) => {
                    if !line.trim().is_empty() {
                        let _ = editor.add_history_entry(line.as_str());
                    }
                    Ok(Some(Line::Text(line)))
                }
                Err(ReadlineError::Interrupted) => Ok(Some(Line::Interrupted)),
                Err(ReadlineError::Eof) => Ok(None),
                Err(e) => Err(e).context("reading a line"),
            },
            Input::Piped(stdin) => {
                let mut line = String::new();
                if stdin.read_line(&mut line).context("reading stdin")? == 0 {
                    return Ok(None);
                }
                Ok(Some(Line::Text(line.trim_end_matches(['\n', '\r']).to_owned())))
            }
        }
    }

    fn save_history(&mut self) {
        if let Input::Terminal { editor, history: Some(path) } = self {
            let _ = editor.save_history(path);
        }
    }
}

enum Line {
    Text(String),
    Interrupted,
}

pub(crate) fn run(args: ShellArgs, runtime: &Runtime) -> Result<ExitCode> {
    let id = actor_id(&args.actor)?;
    let host = args.store.host()?;
    let timeout = args.timeout.get()?;
    let mut actor = runtime.block_on(args.store.wake(&host, &id))?;
    actor.set_call_timeout(timeout);
    let mut input = Input::open();
    let running = Arc::new(AtomicBool::new(false));
    runtime.spawn(interrupt_on_ctrl_c(actor.interrupt_handle(), running.clone()));
    if input.interactive() {
        println!("wasqlite shell on actor {id} ({}). Enter .help for help.", args.store.store);
    }
    let mut failed = false;
    let mut buffer = String::new();
    loop {
        let prompt = if buffer.is_empty() { "wasqlite> " } else { "     ...> " };
        let line = match input.line(prompt)? {
            None => break,
            Some(Line::Interrupted) => {
                buffer.clear();
                continue;
            }
            Some(Line::Text(line)) => line,
        };
        if buffer.is_empty() && line.trim_start().starts_with('.') {
            match runtime.block_on(meta(&mut actor, line.trim())) {
                Ok(Flow::Continue) => {}
                Ok(Flow::Quit) => break,
                Err(e) => {
                    eprintln!("Error: {e:#}");
                    failed = true;
                }
            }
            continue;
        }
        if buffer.is_empty() && line.trim().is_empty() {
            continue;
        }
        buffer.push_str(&line);
        buffer.push('\n');
        // A statement can only become complete at a ';', so only a line with
        // one is worth asking about: asking after every line rescans the
        // whole statement each time, quadratic in its length.
        if line.contains(';') && sql::is_complete(&buffer) {
            running.store(true, Ordering::SeqCst);
            failed |= !runtime.block_on(run_sql(&mut actor, &buffer));
            running.store(false, Ordering::SeqCst);
            buffer.clear();
        }
    }
    if !buffer.trim().is_empty() {
        // Input ended inside a statement; SQLite takes it without its ';'.
        running.store(true, Ordering::SeqCst);
        failed |= !runtime.block_on(run_sql(&mut actor, &buffer));
        running.store(false, Ordering::SeqCst);
    }
    input.save_history();
    runtime.block_on(actor.sleep()).with_context(|| format!("sleeping actor {id}"))?;
    Ok(if failed && !input.interactive() { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

/// Ctrl-C while a statement runs stops the statement, as in `sqlite3`, and
/// the shell goes on. At a terminal's prompt the line editor reads Ctrl-C
/// as a key and no signal arrives. Otherwise, as `sqlite3` does, the third
/// Ctrl-C in a row with no statement started in between ends the shell.
async fn interrupt_on_ctrl_c(handle: InterruptHandle, running: Arc<AtomicBool>) {
    let mut idle = 0;
    while tokio::signal::ctrl_c().await.is_ok() {
        if running.swap(false, Ordering::SeqCst) {
            // `running` goes back to true at the next statement; a second
            // Ctrl-C for the same one counts as idle.
            handle.interrupt();
            eprintln!("Interrupted");
            idle = 0;
        } else {
            idle += 1;
            if idle >= 3 {
                std::process::exit(130);
            }
        }
    }
}

/// Runs SQL text and prints its rows; reports an error and returns false.
async fn run_sql(actor: &mut Actor, text: &str) -> bool {
    let result = sql::run_statements(actor, text, Vec::new(), sql::Delivery::Whole, |rows, _| {
        let mut out = std::io::stdout().lock();
        out.write_all(format::table(rows).as_bytes())?;
        out.flush()?;
        Ok(())
    })
    .await;
    match result {
        Ok(()) => true,
        Err(e) => {
            eprintln!("Error: {e:#}");
            false
        }
    }
}

enum Flow {
    Continue,
    Quit,
}

/// Runs one meta command.
async fn meta(actor: &mut Actor, line: &str) -> Result<Flow> {
    let mut words = line.split_whitespace();
    let command = words.next().unwrap_or_default();
    let argument = words.next();
    match command {
        ".quit" | ".exit" => return Ok(Flow::Quit),
        ".help" => println!("{HELP}"),
        ".tables" => {
            let rows = actor
                .query(
                    "SELECT name FROM sqlite_schema WHERE type IN ('table', 'view') \
                     AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name",
                    (),
                )
                .await?;
            for row in &rows {
                println!("{}", row.get::<String>(0)?);
            }
        }
        ".schema" => {
            let name = argument.map_or(Value::Null, |a| Value::Text(a.to_owned()));
            let rows = actor
                .query(
                    "SELECT sql FROM sqlite_schema WHERE sql IS NOT NULL \
                     AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' \
                     AND (?1 IS NULL OR tbl_name = ?1 COLLATE NOCASE) ORDER BY rowid",
                    vec![name],
                )
                .await?;
            for row in &rows {
                println!("{};", row.get::<String>(0)?);
            }
        }
        other => anyhow::bail!("unknown command {other}; enter .help for the list"),
    }
    Ok(Flow::Continue)
}

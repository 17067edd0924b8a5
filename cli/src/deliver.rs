//! The commands that deliver to a receiver: `send`, `replay` and `simulate`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use http::StatusCode;
use notmeta_webhooks::EventType;
use notmeta_webhooks::testing::{Reply, Sample, SignedRequest, Simulator, sample};

use crate::data::Outgoing;
use crate::table::Table;
use crate::term::{note, out, printable, read};
use crate::{DataArgs, ReceiverArgs, code};

/// `send`: one signed sample (or the body in `--data`), and its answer.
pub(crate) async fn send(
    event_type: &str,
    to: &ReceiverArgs,
    data: &DataArgs,
    id: Option<String>,
    text: Option<String>,
) -> Result<ExitCode, String> {
    let target = to.target()?;
    let outgoing = match &data.data {
        Some(path) => Outgoing::from_file(path, event_type, data.fresh, id.as_deref())?,
        None => {
            let mut sample = sample_of(event_type)?;
            if let Some(id) = id {
                sample = sample.id(id);
            }
            if let Some(text) = text {
                sample = sample.text(&text);
            }
            Outgoing::from_sample(&sample)
        }
    };
    let signed = SignedRequest::new(outgoing.body, to.secret.expose());
    let answer = to.send(&target, &signed).await;
    let mut answers = Answers::new(["event", "type", "status", "answer"]);
    answers.add(&outgoing.id, &outgoing.event_type, answer);
    answers.print(&to.url)
}

/// `replay`: the captured bodies in `files`, unchanged, one request each.
pub(crate) async fn replay(files: &[PathBuf], to: &ReceiverArgs) -> Result<ExitCode, String> {
    let target = to.target()?;
    // Every file is read before anything is sent: a missing one is an error of use
    // with no request made.
    let bodies = files
        .iter()
        .map(|file| read(file))
        .collect::<Result<Vec<_>, _>>()?;
    let mut answers = Answers::new(["file", "event", "status", "answer"]);
    for (file, body) in files.iter().zip(bodies) {
        let id =
            Sample::from_body(&body).map_or_else(|_| "?".to_owned(), |s| s.event_id().to_owned());
        let signed = SignedRequest::new(body, to.secret.expose());
        let answer = to.send(&target, &signed).await;
        answers.add(&file.display().to_string(), &id, answer);
    }
    answers.print(&to.url)
}

/// The deliveries `simulate` adds after the first: later ones, and simultaneous ones.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Copies {
    /// Deliveries after the event is answered 2xx.
    pub(crate) duplicates: u32,
    /// Copies of each delivery sent at the same moment.
    pub(crate) concurrent: u32,
}

/// `simulate`: one event through NotMeta's retry schedule, `speed` times faster.
pub(crate) async fn simulate(
    event_type: &str,
    to: &ReceiverArgs,
    data: &DataArgs,
    speed: u32,
    copies: Copies,
) -> Result<ExitCode, String> {
    let target = to.target()?;
    let outgoing = match &data.data {
        Some(path) => Outgoing::from_file(path, event_type, data.fresh, None)?,
        None => Outgoing::from_sample(&sample_of(event_type)?),
    };
    out(format_args!(
        "{} {} to {}, NotMeta's schedule {}x faster than real time\n",
        printable(&outgoing.event_type, false),
        printable(&outgoing.id, false),
        printable(&to.url, false),
        speed.max(1)
    ))?;
    let report = Simulator::new(to.secret.expose())
        .compressed(speed)
        .with_timeout(Duration::from_secs(to.timeout))
        .with_duplicates(copies.duplicates)
        .with_concurrent_duplicates(copies.concurrent)
        .deliver(&target, outgoing.body)
        .await;
    out(&report)?;
    Ok(code(report.all_delivered()))
}

/// The sample of `event_type`, with a new id and `created_at` now.
fn sample_of(event_type: &str) -> Result<Sample, String> {
    let t: EventType = event_type.parse().map_err(|e| {
        format!("{e} (`notmeta-webhooks list` prints the types there are samples of)")
    })?;
    Ok(sample(t))
}

/// The answers to a command's requests: a table row each, and what they add up to.
#[derive(Debug)]
struct Answers {
    table: Table<4>,
    /// Whether every request was answered 2xx.
    all_ok: bool,
    /// Whether a request was answered 404.
    not_found: bool,
}

impl Answers {
    fn new(header: [&str; 4]) -> Self {
        Self {
            table: Table::new(header),
            all_ok: true,
            not_found: false,
        }
    }

    /// Adds a row for one request: `first` and `second` name it.
    fn add(&mut self, first: &str, second: &str, answer: Result<Reply, String>) {
        let (status, text) = match answer {
            Ok(reply) => {
                self.all_ok &= reply.status.is_success();
                self.not_found |= reply.status == StatusCode::NOT_FOUND;
                (reply.status.as_u16().to_string(), shown(&reply))
            }
            Err(error) => {
                self.all_ok = false;
                ("-".to_owned(), error)
            }
        };
        self.table
            .row([first.to_owned(), second.to_owned(), status, text]);
    }

    /// Prints the table, then a hint on standard error when a request to `url` was
    /// answered 404; exit 0 when every request was answered 2xx, else 1.
    fn print(self, url: &str) -> Result<ExitCode, String> {
        out(&self.table)?;
        if self.not_found {
            note(not_found_hint(url));
        }
        Ok(code(self.all_ok))
    }
}

/// The start of a reply's body, for its table cell.
fn shown(reply: &Reply) -> String {
    let mut text: String = reply.body.chars().take(60).collect();
    if reply.truncated || text.len() < reply.body.len() {
        text.push('…');
    }
    text
}

/// What a 404 most likely means: a receiver's endpoint never answers 404, so the
/// request reached a server with nothing mounted at the URL's path.
fn not_found_hint(url: &str) -> String {
    let path = url
        .parse::<http::Uri>()
        .map_or_else(|_| "/".to_owned(), |uri| uri.path().to_owned());
    format!(
        "hint: 404 Not Found: nothing is served at {path}; is the URL's path the one your \
         endpoint is mounted at?"
    )
}

#[cfg(test)]
mod tests {
    use super::not_found_hint;

    #[test]
    fn the_hint_names_the_path() {
        assert!(not_found_hint("http://127.0.0.1:3000/webhook?x=1").contains(" at /webhook;"));
        assert!(not_found_hint("http://127.0.0.1:3000").contains(" at /;"));
    }
}

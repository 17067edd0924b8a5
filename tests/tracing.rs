//! The `tracing` feature: one span per delivery with id, type and outcome; refused
//! requests only at `debug`; never the secret or a signature.

use std::io::Write;
use std::sync::{Arc, Mutex};

use notmeta_webhooks::receiver::{HandlerError, Receiver};
use notmeta_webhooks::{Event, Verifier, sign};
use tracing::Level;

const SECRET: &str = "whsec_tracing_secret";

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Capture {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

async fn deliveries(level: Level) -> String {
    let capture = Capture::default();
    let writer = capture.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let receiver = Receiver::new(
        Verifier::new(SECRET).unwrap(),
        |event: Event<'static>| async move {
            if event.id == "evt_fails" {
                return Err(HandlerError::temporary("database down"));
            }
            Ok(())
        },
    );
    let ok =
        br#"{"id":"evt_ok","type":"user.online","created_at":"2024-01-01T12:00:00Z","data":{}}"#;
    let fails = br#"{"id":"evt_fails","type":"message.read","created_at":"2024-01-01T12:00:00Z","data":{}}"#;
    for body in [&ok[..], &fails[..]] {
        let header = sign(body, SECRET);
        receiver.receive(body, [header.as_bytes()]).await;
    }
    let forged = sign(ok, "not-the-secret");
    for _ in 0..100 {
        receiver.receive(ok, [forged.as_bytes()]).await;
    }
    let text = capture.text();
    for secret_material in [SECRET, &sign(ok, SECRET)[7..], &forged[7..]] {
        assert!(
            !text.contains(secret_material),
            "logs leak {secret_material}"
        );
    }
    text
}

#[tokio::test]
async fn debug_logs_show_one_span_per_delivery() {
    let text = deliveries(Level::DEBUG).await;
    let handled = text
        .lines()
        .find(|l| l.contains("event_id=\"evt_ok\""))
        .unwrap_or_else(|| panic!("no line for evt_ok in:\n{text}"));
    assert!(handled.contains("notmeta_webhook{"), "{handled}");
    assert!(handled.contains("event_type=\"user.online\""), "{handled}");
    let failed: Vec<_> = text.lines().filter(|l| l.contains("evt_fails")).collect();
    assert!(
        failed
            .iter()
            .any(|l| l.contains("WARN") && l.contains("handler failed temporarily")),
        "{failed:?}"
    );
    let refused = text
        .lines()
        .filter(|l| l.contains("delivery refused"))
        .count();
    assert_eq!(refused, 100, "each forged request once, at debug");
    assert!(
        text.lines()
            .filter(|l| l.contains("delivery refused"))
            .all(|l| l.contains("DEBUG"))
    );
    assert!(text.contains("outcome=\"handled\""), "{text}");
    assert!(text.contains("outcome=\"temporary_failure\""), "{text}");
}

#[tokio::test]
async fn at_info_forged_requests_write_nothing() {
    let text = deliveries(Level::INFO).await;
    assert!(!text.contains("refused"), "{text}");
    // The temporary failure is a warning, so it is still there.
    assert!(text.contains("handler failed temporarily"), "{text}");
}

//! Pieces shared by the example programs.
#![allow(dead_code, unreachable_pub)]

use notmeta_webhooks::{Event, EventKind};

/// One log line per event, in the spirit of NotMeta's own samples: id and type, the
/// sender and text of messages, the assignee of assignments.
pub fn describe(event: &Event<'_>) -> String {
    let detail = match &event.kind {
        EventKind::MessageReceived(m) => format!(
            "new message from {}: {}",
            m.message.from.as_deref().unwrap_or("?"),
            m.message.text.as_deref().unwrap_or("")
        ),
        EventKind::ConversationAssigned(a) => format!(
            "conversation {} assigned to {}",
            a.conversation.id.as_deref().unwrap_or("?"),
            a.conversation
                .assigned_to
                .as_deref()
                .or(a.user.id.as_deref())
                .unwrap_or("?")
        ),
        EventKind::Unknown { .. } => "unhandled event type".to_owned(),
        _ => String::new(),
    };
    format!("{} {} {}", event.id, event.type_str(), detail)
        .trim_end()
        .to_owned()
}

/// The secret from `NOTMETA_WEBHOOK_SECRET`, or a demo default (with a warning).
pub fn secret_from_env() -> String {
    std::env::var("NOTMETA_WEBHOOK_SECRET").unwrap_or_else(|_| {
        eprintln!("NOTMETA_WEBHOOK_SECRET is not set; using the demo secret `whsec_demo`");
        "whsec_demo".to_owned()
    })
}

/// The port from `PORT`, or 3000.
pub fn port_from_env() -> u16 {
    std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(3000)
}

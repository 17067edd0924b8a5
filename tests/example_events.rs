//! Every example event of the fixtures parses into its typed variant, with
//! concrete field values checked.

use notmeta_test_support::example_events;
use notmeta_webhooks::event::{ConversationStatus, MessageType, UserRole};
use notmeta_webhooks::{Event, EventKind, EventType, Verifier, sign};

fn parse_signed(body: &[u8]) -> Event<'_> {
    let verifier = Verifier::new("whsec_test").unwrap();
    verifier
        .verify(body, [&sign(body, "whsec_test")])
        .and_then(|payload| payload.parse())
        .unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn all_seventeen_types_have_an_example_and_parse_to_their_variant() {
    let events = example_events();
    assert_eq!(events.len(), 17, "one example per event type");
    let mut types = Vec::new();
    for (file, body) in &events {
        let event = parse_signed(body);
        let event_type = event
            .event_type()
            .unwrap_or_else(|| panic!("{file}: unknown type"));
        assert!(
            file.ends_with(&format!(".{}.json", event_type.as_str())),
            "{file}"
        );
        assert_eq!(file.split('.').next().unwrap(), event.id.as_str(), "{file}");
        assert_eq!(event.type_str(), event_type.as_str());
        assert_eq!(event.raw_body(), body.as_slice());
        // Owned copies are equal to the borrowed event.
        assert_eq!(event.clone().into_owned(), event);
        types.push(event_type);
    }
    types.sort();
    let mut all = EventType::ALL.to_vec();
    all.sort();
    assert_eq!(types, all);
}

fn example(type_name: &str) -> Vec<u8> {
    example_events()
        .into_iter()
        .find(|(f, _)| f.ends_with(&format!(".{type_name}.json")))
        .unwrap_or_else(|| panic!("no example for {type_name}"))
        .1
}

#[test]
fn conversation_events_carry_their_fields() {
    let body = example("conversation.created");
    let event = parse_signed(&body);
    assert_eq!(event.created_at.to_string(), "2024-01-01T12:00:00Z");
    let EventKind::ConversationCreated(p) = &event.kind else {
        panic!("{:?}", event.kind)
    };
    let c = p.conversation.as_ref().unwrap();
    assert_eq!(c.id.as_deref(), Some("conv_123456789"));
    assert_eq!(c.status, Some(ConversationStatus::Open));
    assert_eq!(c.assigned_to, None);
    assert_eq!(c.created_at.unwrap().to_string(), "2024-01-01T11:55:00Z");

    let body = example("conversation.assigned");
    let event = parse_signed(&body);
    let EventKind::ConversationAssigned(p) = &event.kind else {
        panic!("{:?}", event.kind)
    };
    assert_eq!(p.conversation.status, Some(ConversationStatus::Assigned));
    assert_eq!(
        p.conversation.assigned_to.as_deref(),
        Some("user_123456789")
    );
    assert_eq!(
        p.conversation.assigned_at.unwrap().to_string(),
        "2024-01-01T12:05:00Z"
    );
    assert_eq!(p.user.id.as_deref(), Some("user_123456789"));
    assert_eq!(p.user.name.as_deref(), Some("Juan Pérez"));
    assert_eq!(p.user.email.as_deref(), Some("juan@empresa.com"));
    assert_eq!(p.user.role, Some(UserRole::Agent));

    let body = example("conversation.unassigned");
    let event = parse_signed(&body);
    let EventKind::ConversationUnassigned(p) = &event.kind else {
        panic!("{:?}", event.kind)
    };
    assert_eq!(p.conversation.as_ref().unwrap().assigned_to, None);
    assert_eq!(
        p.user.as_ref().unwrap().id.as_deref(),
        Some("user_123456789")
    );

    let body = example("conversation.closed");
    let event = parse_signed(&body);
    let EventKind::ConversationClosed(p) = &event.kind else {
        panic!("{:?}", event.kind)
    };
    assert_eq!(
        p.conversation.as_ref().unwrap().status,
        Some(ConversationStatus::Closed)
    );
    assert!(p.user.is_none());

    let body = example("conversation.reopened");
    let event = parse_signed(&body);
    let EventKind::ConversationReopened(p) = &event.kind else {
        panic!("{:?}", event.kind)
    };
    assert_eq!(
        p.conversation.as_ref().unwrap().status,
        Some(ConversationStatus::Open)
    );
}

#[test]
fn message_events_carry_their_fields() {
    let body = example("message.received");
    let event = parse_signed(&body);
    let EventKind::MessageReceived(p) = &event.kind else {
        panic!("{:?}", event.kind)
    };
    let m = &p.message;
    assert_eq!(m.id.as_deref(), Some("msg_123456789"));
    assert_eq!(m.conversation_id.as_deref(), Some("conv_123456789"));
    assert_eq!(m.from.as_deref(), Some("1234567890"));
    assert_eq!(m.to.as_deref(), Some("0987654321"));
    assert_eq!(m.kind, Some(MessageType::Text));
    assert_eq!(m.text.as_deref(), Some("Hola, necesito ayuda"));
    assert_eq!(m.timestamp.unwrap().unix_timestamp(), 1_704_110_400);
    assert_eq!(p.conversation.id.as_deref(), Some("conv_123456789"));

    for (name, with_conversation) in [
        ("message.sent", true),
        ("message.delivered", false),
        ("message.read", false),
    ] {
        let body = example(name);
        let event = parse_signed(&body);
        let p = match &event.kind {
            EventKind::MessageSent(p)
            | EventKind::MessageDelivered(p)
            | EventKind::MessageRead(p) => p,
            other => panic!("{name}: {other:?}"),
        };
        assert_eq!(event.type_str(), name);
        let m = p.message.as_ref().unwrap();
        assert_eq!(m.id.as_deref(), Some("msg_223456789"));
        assert_eq!(m.text.as_deref(), Some("¡Hola! ¿En qué te ayudo?"));
        assert_eq!(p.conversation.is_some(), with_conversation, "{name}");
    }

    let body = example("message.failed");
    let event = parse_signed(&body);
    let EventKind::MessageFailed(p) = &event.kind else {
        panic!("{:?}", event.kind)
    };
    assert_eq!(
        p.message.as_ref().unwrap().id.as_deref(),
        Some("msg_223456789")
    );
    let e = p.error.as_ref().unwrap();
    assert_eq!(e.code.as_deref(), Some("470"));
    assert_eq!(e.message.as_deref(), Some("Message failed to send"));
}

#[test]
fn user_events_carry_the_user() {
    for (name, expected_name) in [
        ("user.created", "Juan Pérez"),
        ("user.updated", "Juan P. Pérez"),
        ("user.deleted", "Juan Pérez"),
        ("user.online", "Juan Pérez"),
        ("user.offline", "Juan Pérez"),
    ] {
        let body = example(name);
        let event = parse_signed(&body);
        let p = match &event.kind {
            EventKind::UserCreated(p)
            | EventKind::UserUpdated(p)
            | EventKind::UserDeleted(p)
            | EventKind::UserOnline(p)
            | EventKind::UserOffline(p) => p,
            other => panic!("{name}: {other:?}"),
        };
        assert_eq!(event.type_str(), name);
        let u = p.user.as_ref().unwrap();
        assert_eq!(u.id.as_deref(), Some("user_123456789"));
        assert_eq!(u.name.as_deref(), Some(expected_name));
        assert_eq!(u.role, Some(UserRole::Agent));
    }
}

#[test]
fn webhook_events_carry_the_challenge_and_the_error() {
    let body = example("webhook.verified");
    let event = parse_signed(&body);
    assert_eq!(event.id, "evt_verify_123");
    let EventKind::WebhookVerified(p) = &event.kind else {
        panic!("{:?}", event.kind)
    };
    assert_eq!(p.webhook_id, "wh_123456789");
    assert_eq!(event.challenge(), Some("challenge_string_123"));
    let answer = event.challenge_response().unwrap();
    assert_eq!(answer.status(), 200);
    assert!(
        answer.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    assert_eq!(answer.body().as_bytes(), b"challenge_string_123");

    let body = example("webhook.failed");
    let event = parse_signed(&body);
    assert!(event.challenge_response().is_none());
    let EventKind::WebhookFailed(p) = &event.kind else {
        panic!("{:?}", event.kind)
    };
    assert_eq!(p.webhook_id.as_deref(), Some("wh_123456789"));
    let e = p.error.as_ref().unwrap();
    assert_eq!(e.code.as_deref(), Some("timeout"));
    assert_eq!(
        e.message.as_deref(),
        Some("Endpoint did not answer within 30 seconds")
    );
}

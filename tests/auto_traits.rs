//! Every public type can cross threads and live in shared state.

use notmeta_webhooks::event::*;
use notmeta_webhooks::*;

fn assert_send_sync_static<T: Send + Sync + 'static>() {}

#[test]
fn public_types_are_send_sync_static() {
    assert_send_sync_static::<Error>();
    assert_send_sync_static::<ErrorKind>();
    assert_send_sync_static::<Secret>();
    assert_send_sync_static::<Verifier>();
    assert_send_sync_static::<VerifierBuilder>();
    assert_send_sync_static::<VerifiedPayload<'static>>();
    assert_send_sync_static::<Event<'static>>();
    assert_send_sync_static::<EventKind<'static>>();
    assert_send_sync_static::<EventType>();
    assert_send_sync_static::<UnknownEventType>();
    assert_send_sync_static::<DataError>();
    assert_send_sync_static::<ParseTimestampError>();
    assert_send_sync_static::<EventId<'static>>();
    assert_send_sync_static::<MessageId<'static>>();
    assert_send_sync_static::<ConversationId<'static>>();
    assert_send_sync_static::<UserId<'static>>();
    assert_send_sync_static::<WebhookId<'static>>();
    assert_send_sync_static::<Timestamp>();
    assert_send_sync_static::<RawJson<'static>>();
    assert_send_sync_static::<ConversationStatus<'static>>();
    assert_send_sync_static::<MessageType<'static>>();
    assert_send_sync_static::<UserRole<'static>>();
    assert_send_sync_static::<Conversation<'static>>();
    assert_send_sync_static::<Message<'static>>();
    assert_send_sync_static::<User<'static>>();
    assert_send_sync_static::<ErrorInfo<'static>>();
    assert_send_sync_static::<ConversationPayload<'static>>();
    assert_send_sync_static::<ConversationAssigned<'static>>();
    assert_send_sync_static::<MessageReceived<'static>>();
    assert_send_sync_static::<MessagePayload<'static>>();
    assert_send_sync_static::<MessageFailed<'static>>();
    assert_send_sync_static::<UserPayload<'static>>();
    assert_send_sync_static::<WebhookVerified<'static>>();
    assert_send_sync_static::<WebhookFailed<'static>>();
}

//! The durable point of an acknowledged publish, shared by every protocol
//! that acknowledges one (MQTT's PUBACK/PUBREC, the HTTP edge's 202): with
//! persistence on, an acknowledgement promises the event survives a crash,
//! so it waits until every shard's log holds what this shard routed.
//!
//! Owns: the wait and its refusal's log line. Must not touch: what the
//! protocol answers (its machine decides from the outcome).

use super::ctx::ShardCtx;

/// Whether an acknowledged publish may be routed now: the log takes new
/// work (persistence on; always true when it is off).
pub fn admits(ctx: &ShardCtx) -> bool {
    !ctx.persisting() || ctx.log_healthy()
}

/// Waits until what this shard routed is durable; false (logged, rate
/// limited) when the log cannot make it so.
pub async fn reached(ctx: &ShardCtx) -> bool {
    match ctx.durable().await {
        Ok(()) => true,
        Err(e) => {
            if ctx.log_limiter.allow() {
                tracing::warn!(shard = ctx.id, error = ?e, "publish refused: the log cannot make it durable");
            }
            false
        }
    }
}

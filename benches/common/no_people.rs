//! A `People` that knows nobody, for benches whose use-cases never look anyone up (the status
//! page, the calendar feed).

use futures_util::future::BoxFuture;
use incident_bot::incident::model::UserId;
use incident_bot::service::People;

pub struct NoPeople;

impl People for NoPeople {
    fn check_person<'a>(&'a self, user: &'a UserId) -> BoxFuture<'a, anyhow::Result<Result<String, String>>> {
        Box::pin(async move { Ok(Err(format!("<@{user}> is unknown here"))) })
    }

    fn channel_members<'a>(&'a self, _channel: &'a str) -> BoxFuture<'a, anyhow::Result<Vec<String>>> {
        Box::pin(async { Ok(Vec::new()) })
    }
}

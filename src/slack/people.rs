//! What the application layer asks Slack about people and channels ([`People`]), answered
//! with `users.info` and `conversations.members`.

use super::web::SlackWeb;
use crate::incident::model::UserId;
use crate::service::People;
use futures_util::future::BoxFuture;

impl People for SlackWeb {
    fn check_person<'a>(&'a self, user: &'a UserId) -> BoxFuture<'a, anyhow::Result<Result<String, String>>> {
        Box::pin(async move { Ok(SlackWeb::check_person(self, user.as_str()).await?) })
    }

    fn channel_members<'a>(&'a self, channel: &'a str) -> BoxFuture<'a, anyhow::Result<Vec<String>>> {
        Box::pin(async move { Ok(self.members(channel).await?) })
    }
}

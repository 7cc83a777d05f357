//! A transaction of plain writes (no reads between them), listed first and committed at once:
//! on SQLite in one round trip to the connection's thread ([`OneTrip`]), on PostgreSQL one
//! statement after another inside a transaction.
//!
//! The outbox's bookkeeping is such a transaction, taken hundreds of times a minute under a
//! major incident; on SQLite each of its statements was a round trip under the write turn
//! while people's changes waited behind it, and the background task holding the turn runs at
//! a lower priority, so that it was often scheduled again only milliseconds after each one.

use super::{Db, OneTrip, ONE_TRIP_BEGIN, ONE_TRIP_COMMIT};

/// A value bound to a statement.
#[derive(Debug, Clone)]
pub(crate) enum Value {
    Int(Option<i64>),
    Text(Option<String>),
}

impl From<i64> for Value {
    fn from(v: i64) -> Value {
        Value::Int(Some(v))
    }
}

impl From<&str> for Value {
    fn from(v: &str) -> Value {
        Value::Text(Some(v.to_owned()))
    }
}

impl From<String> for Value {
    fn from(v: String) -> Value {
        Value::Text(Some(v))
    }
}

impl From<Option<&str>> for Value {
    fn from(v: Option<&str>) -> Value {
        Value::Text(v.map(str::to_owned))
    }
}

/// Statements, each numbered from `$1`, with their values.
#[derive(Debug, Default)]
pub(crate) struct Writes {
    statements: Vec<(&'static str, Vec<Value>)>,
}

/// Binds `$values` to query `$q`, in order.
macro_rules! bind_values {
    ($q:expr, $values:expr) => {{
        let mut q = $q;
        for v in $values {
            q = match v {
                Value::Int(i) => q.bind(*i),
                Value::Text(t) => q.bind(t.as_deref()),
            };
        }
        q
    }};
}

impl Writes {
    pub(crate) fn push(&mut self, statement: &'static str, values: Vec<Value>) {
        self.statements.push((statement, values));
    }

    /// Commits every statement in one transaction, under the write turn on SQLite.
    pub(crate) async fn commit(&self, db: &Db) -> Result<(), sqlx::Error> {
        match db {
            Db::Sqlite(pool) => {
                let _turn = db.writer().await;
                let mut text = String::from(ONE_TRIP_BEGIN);
                let mut taken = 0;
                for (k, (statement, values)) in self.statements.iter().enumerate() {
                    if k > 0 {
                        text.push_str("; ");
                    }
                    text.push_str(&renumbered(statement, taken));
                    taken += values.len();
                }
                text.push_str(ONE_TRIP_COMMIT);
                // Not kept prepared: a batch's text differs with its jobs.
                let q = bind_values!(sqlx::query(&text), self.statements.iter().flat_map(|(_, v)| v)).persistent(false);
                let mut trip = OneTrip::acquire(pool).await?;
                let done = q.execute(trip.conn()).await;
                trip.finish(done).map(|_| ())
            }
            Db::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                for (statement, values) in &self.statements {
                    bind_values!(sqlx::query(statement), values).execute(&mut *tx).await?;
                }
                tx.commit().await
            }
        }
    }
}

/// `statement`, numbered from `$1`, as the next statement of a text whose statements before it
/// took `taken` values: SQLite numbers the parameters of one text as one list.
fn renumbered(statement: &str, taken: usize) -> String {
    let mut out = String::with_capacity(statement.len() + 8);
    let mut chars = statement.chars().peekable();
    while let Some(c) = chars.next() {
        out.push(c);
        if c != '$' {
            continue;
        }
        let mut digits = String::new();
        while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
            digits.push(*d);
            chars.next();
        }
        match digits.parse::<usize>() {
            Ok(n) => out.push_str(&(n + taken).to_string()),
            Err(_) => out.push_str(&digits),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_statements_number_their_values_after_the_earlier_ones() {
        assert_eq!(
            renumbered("UPDATE t SET a = $1, b = $12 WHERE id = $2", 0),
            "UPDATE t SET a = $1, b = $12 WHERE id = $2"
        );
        assert_eq!(
            renumbered("UPDATE t SET a = $1, b = $12 WHERE id = $2", 5),
            "UPDATE t SET a = $6, b = $17 WHERE id = $7"
        );
        assert_eq!(renumbered("SELECT '$' || $1", 3), "SELECT '$' || $4");
    }
}

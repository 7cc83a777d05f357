//! The HTTP/1.1 client side the benches need: one request at a time on a keep-alive
//! connection, the answer read whole.

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

/// Writes `request` (head and body, as bytes on the wire) and reads the answer whole (its body
/// by `Content-Length`); returns the status.
pub async fn exchange(stream: &mut BufReader<tokio::net::TcpStream>, request: &str) -> anyhow::Result<u16> {
    stream.get_mut().write_all(request.as_bytes()).await?;
    let mut line = String::new();
    stream.read_line(&mut line).await?;
    let status: u16 = line.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let mut length = 0usize;
    loop {
        line.clear();
        if stream.read_line(&mut line).await? == 0 || line == "\r\n" {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = v.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0; length];
    stream.read_exact(&mut body).await?;
    Ok(status)
}

//! A blocking client of the control socket (no runtime, no thread): what
//! the CLI subcommands and the tests use.

use super::protocol::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;

/// Longest line accepted from a server (a `ps` of 100,000 processes fits).
const MAX_REPLY_LINE: u64 = 64 * 1024 * 1024;

/// How long a runner may take to answer the hello. A live runner answers
/// at once; one that is stopped (a paused topology, a SIGSTOP) never does,
/// and a client must not wait for it forever. Later answers have no bound
/// of their own: a `restart` or `down` lasts as long as its drains.
pub const HELLO_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

#[derive(Debug)]
pub enum ClientError {
    /// Connecting, reading or writing failed.
    Io(std::io::Error),
    /// The server closed the connection or sent something that is not
    /// the protocol.
    Protocol(String),
    /// The server answered with an error (e.g. `permission-denied` or
    /// `version-mismatch` to the hello).
    Refused(ControlError),
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientError::Io(e) => write!(f, "{e}"),
            ClientError::Protocol(m) => f.write_str(m),
            ClientError::Refused(e) => f.write_str(&e.message),
        }
    }
}

impl From<std::io::Error> for ClientError {
    fn from(e: std::io::Error) -> ClientError {
        ClientError::Io(e)
    }
}

/// The server's hello.
#[derive(Clone, Debug, PartialEq)]
pub struct ServerInfo {
    pub protocol: u32,
    pub server: String,
    pub topology: String,
    pub pid: u32,
}

pub struct Client {
    writer: UnixStream,
    reader: BufReader<UnixStream>,
    next_id: u64,
    /// The raw text of the last line read (for `--json` output).
    pub last_line: String,
}

impl Client {
    /// Connect and shake hands.
    pub fn connect(socket: &Path) -> Result<(Client, ServerInfo), ClientError> {
        let (name, _dir) = super::paths::socket_name(socket)?;
        let stream = UnixStream::connect(name)?;
        stream.set_read_timeout(Some(HELLO_TIMEOUT))?;
        let reader = BufReader::new(stream.try_clone()?);
        let mut c = Client {
            writer: stream,
            reader,
            next_id: 1,
            last_line: String::new(),
        };
        let sent = c.send(&ClientMsg::Hello {
            protocol: PROTOCOL,
            client: Some(format!("flowrun {}", env!("CARGO_PKG_VERSION"))),
        });
        // A server that refuses (credentials, busy) answers and closes
        // without reading: the hello may fail with EPIPE, yet its answer
        // is there to read.
        let first = c.recv();
        if let Err(ClientError::Io(e)) = &first {
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) {
                return Err(ClientError::Protocol(format!(
                    "the runner did not answer within {}s: it may be stopped \
                     (a paused topology resumes with `fg` or `kill -CONT`)",
                    HELLO_TIMEOUT.as_secs()
                )));
            }
        }
        if let (Err(e), Err(_) | Ok(ServerMsg::Hello { .. })) = (&sent, &first) {
            return Err(ClientError::Protocol(e.to_string()));
        }
        c.writer.set_read_timeout(None)?;
        match first? {
            ServerMsg::Hello {
                protocol,
                server,
                topology,
                pid,
            } => Ok((
                c,
                ServerInfo {
                    protocol,
                    server,
                    topology,
                    pid,
                },
            )),
            ServerMsg::Error { error, .. } => Err(ClientError::Refused(error)),
            other => Err(ClientError::Protocol(format!(
                "expected the server's hello, got {other:?}"
            ))),
        }
    }

    fn send(&mut self, msg: &ClientMsg) -> Result<(), ClientError> {
        let mut line = serde_json::to_vec(msg).map_err(|e| ClientError::Protocol(e.to_string()))?;
        line.push(b'\n');
        self.writer.write_all(&line)?;
        Ok(())
    }

    /// Read the next message from the server.
    pub fn recv(&mut self) -> Result<ServerMsg, ClientError> {
        self.last_line.clear();
        let n = (&mut self.reader)
            .take(MAX_REPLY_LINE)
            .read_line(&mut self.last_line)?;
        if n == 0 {
            return Err(ClientError::Protocol(
                "the runner closed the connection".into(),
            ));
        }
        if !self.last_line.ends_with('\n') {
            return Err(ClientError::Protocol(
                "the runner sent an unfinished line".into(),
            ));
        }
        serde_json::from_str(self.last_line.trim_end())
            .map_err(|e| ClientError::Protocol(format!("unexpected message from the runner: {e}")))
    }

    /// Send a request; returns its id. Read the answer with [`Client::recv`].
    pub fn start(&mut self, request: Request) -> Result<u64, ClientError> {
        let id = self.next_id;
        self.next_id += 1;
        self.send(&ClientMsg::Request { id, request })?;
        Ok(id)
    }

    /// Send a request that has one answer and wait for it.
    pub fn call(&mut self, request: Request) -> Result<Result<Reply, ControlError>, ClientError> {
        let id = self.start(request)?;
        match self.recv()? {
            ServerMsg::Reply { id: got, reply } if got == id => Ok(Ok(reply)),
            ServerMsg::Error { id: got, error } if got == Some(id) || got.is_none() => {
                Ok(Err(error))
            }
            other => Err(ClientError::Protocol(format!(
                "unexpected answer from the runner: {other:?}"
            ))),
        }
    }
}

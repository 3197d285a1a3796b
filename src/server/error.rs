//! What can stop the server from starting.

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::tls;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Tls(#[from] tls::Error),
    #[error("cannot watch {dir} for changes to {file}: {source}")]
    Watch {
        dir: PathBuf,
        file: PathBuf,
        #[source]
        source: notify::Error,
    },
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

//! TLS the tool speaks to agents, Redis and PostgreSQL: rustls with the ring provider, installed
//! once for the process, and the extra roots of `--ca-cert` (PEM files), which every connection
//! trusts next to the system's.

use std::path::PathBuf;

use color_eyre::eyre::{Result, WrapErr, bail};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// Makes ring the process's rustls provider (idempotent).
pub(crate) fn install_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The certificates of `--ca-cert`: extra roots for every TLS connection.
#[derive(Clone, Debug, Default)]
pub(crate) struct CaCerts {
    /// The files as given, concatenated (PEM).
    pub pem: Vec<u8>,
    pub certs: Vec<CertificateDer<'static>>,
}

impl CaCerts {
    /// Reads PEM files; a file that cannot be read or holds no certificate is an error.
    pub(crate) fn load(paths: &[PathBuf]) -> Result<CaCerts> {
        let mut loaded = CaCerts::default();
        for path in paths {
            let pem = std::fs::read(path)
                .wrap_err_with(|| format!("cannot read the CA certificate {}", path.display()))?;
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
                .collect::<Result<_, _>>()
                .map_err(|err| {
                    color_eyre::eyre::eyre!(
                        "{} is not a PEM certificate file: {err}",
                        path.display()
                    )
                })?;
            if certs.is_empty() {
                bail!("{} holds no PEM certificate", path.display());
            }
            loaded.certs.extend(certs);
            loaded.pem.extend_from_slice(&pem);
            loaded.pem.push(b'\n');
        }
        Ok(loaded)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.certs.is_empty()
    }
}

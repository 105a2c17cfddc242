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
                .map_err(|_| {
                    color_eyre::eyre::eyre!(
                        "{} is not a PEM certificate file (it does not parse)",
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

    /// The system's roots and these, as one PEM bundle: for clients that take a bundle in place
    /// of the system's roots (the redis crate), so that `--ca-cert` adds and never replaces.
    pub(crate) fn pem_with_system_roots(&self) -> Vec<u8> {
        use base64::Engine as _;
        let mut bundle = Vec::new();
        for cert in rustls_native_certs::load_native_certs().certs {
            let encoded = base64::engine::general_purpose::STANDARD.encode(cert.as_ref());
            bundle.extend_from_slice(b"-----BEGIN CERTIFICATE-----\n");
            for line in encoded.as_bytes().chunks(64) {
                bundle.extend_from_slice(line);
                bundle.push(b'\n');
            }
            bundle.extend_from_slice(b"-----END CERTIFICATE-----\n");
        }
        bundle.extend_from_slice(&self.pem);
        bundle
    }
}

/// How much of the server's certificate a connection checks (libpq's `sslmode` levels).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verify {
    /// Encrypt only (`prefer`, `require`).
    Nothing,
    /// The chain up to a trusted root, not the host name (`verify-ca`).
    Chain,
    /// The chain and the host name (`verify-full`).
    Full,
}

/// A rustls client configuration that checks `verify` against `roots` alone when given (libpq's
/// `sslrootcert` pins them), else against the system's roots plus `extra` (`--ca-cert`).
pub(crate) fn client_config(
    verify: Verify,
    roots: &[CertificateDer<'static>],
    extra: &CaCerts,
) -> Result<rustls::ClientConfig> {
    install_provider();
    let provider = rustls::crypto::CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| std::sync::Arc::new(rustls::crypto::ring::default_provider()));
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    if verify == Verify::Nothing {
        return Ok(builder
            .dangerous()
            .with_custom_certificate_verifier(std::sync::Arc::new(NoVerification(provider)))
            .with_no_client_auth());
    }
    let mut store = rustls::RootCertStore::empty();
    if roots.is_empty() {
        for cert in rustls_native_certs::load_native_certs().certs {
            let _ = store.add(cert);
        }
        store.add_parsable_certificates(extra.certs.iter().cloned());
    } else {
        store.add_parsable_certificates(roots.iter().cloned());
    }
    let webpki = rustls::client::WebPkiServerVerifier::builder_with_provider(
        std::sync::Arc::new(store),
        provider,
    )
    .build()?;
    Ok(match verify {
        Verify::Full => builder.with_webpki_verifier(webpki).with_no_client_auth(),
        _ => builder
            .dangerous()
            .with_custom_certificate_verifier(std::sync::Arc::new(ChainOnly(webpki)))
            .with_no_client_auth(),
    })
}

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

/// Accepts any certificate: `sslmode=require` encrypts without authenticating the server.
#[derive(Debug)]
struct NoVerification(std::sync::Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The full check but for the host name: `sslmode=verify-ca`.
#[derive(Debug)]
struct ChainOnly(std::sync::Arc<rustls::client::WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        use rustls::CertificateError::{NotValidForName, NotValidForNameContext};
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                NotValidForName | NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

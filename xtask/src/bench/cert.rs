//! The one certificate every proxy of the bench serves: a small CA and a leaf for localhost (ECDSA P-256,
//! rcgen), written as `ca.pem` (what the clients trust), `cert.pem` (leaf + CA), `key.pem` and
//! `combined.pem` (chain then key, for HAProxy and qproxy).

use std::path::{Path, PathBuf};

use anyhow::Result;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
    PKCS_ECDSA_P256_SHA256,
};

pub(crate) struct Certs {
    pub(crate) ca: PathBuf,
    pub(crate) cert: PathBuf,
    pub(crate) key: PathBuf,
    pub(crate) combined: PathBuf,
}

pub(crate) fn write(dir: &Path) -> Result<Certs> {
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, "qproxy bench CA");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let ca_cert = ca.self_signed(&ca_key)?;
    let mut leaf = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])?;
    leaf.distinguished_name.push(DnType::CommonName, "localhost");
    leaf.is_ca = IsCa::NoCa;
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let leaf_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let leaf_cert = leaf.signed_by(&leaf_key, &ca_cert, &ca_key)?;
    let certs = Certs {
        ca: dir.join("ca.pem"),
        cert: dir.join("cert.pem"),
        key: dir.join("key.pem"),
        combined: dir.join("combined.pem"),
    };
    let chain = format!("{}{}", leaf_cert.pem(), ca_cert.pem());
    std::fs::write(&certs.ca, ca_cert.pem())?;
    std::fs::write(&certs.cert, &chain)?;
    std::fs::write(&certs.key, leaf_key.serialize_pem())?;
    std::fs::write(&certs.combined, chain + &leaf_key.serialize_pem())?;
    Ok(certs)
}

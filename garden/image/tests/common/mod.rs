//! Helpers for the image tests: layer tarballs built byte by byte (so
//! hostile ones can be made too), stores in temporary directories, and
//! overlay mounts that are undone even when a test fails.

#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use garden_image::digest::Digest;

pub fn require_root() {
    assert!(
        rustix::process::geteuid().is_root(),
        "these tests need root (real ownership, device nodes, overlay mounts)"
    );
}

/// A tar archive built entry by entry, paths written as given.
pub struct LayerBuilder {
    out: tar::Builder<Vec<u8>>,
}

impl Default for LayerBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl LayerBuilder {
    pub fn new() -> LayerBuilder {
        LayerBuilder {
            out: tar::Builder::new(Vec::new()),
        }
    }

    fn header(
        kind: tar::EntryType,
        path: &str,
        mode: u32,
        uid: u64,
        gid: u64,
        size: u64,
    ) -> tar::Header {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(kind);
        let name = &mut h.as_old_mut().name;
        name.fill(0);
        name[..path.len()].copy_from_slice(path.as_bytes());
        h.set_mode(mode);
        h.set_uid(uid);
        h.set_gid(gid);
        h.set_size(size);
        h.set_mtime(1_600_000_000);
        h
    }

    fn push(&mut self, mut h: tar::Header, data: &[u8]) -> &mut Self {
        h.set_cksum();
        self.out.append(&h, data).expect("append");
        self
    }

    pub fn dir(&mut self, path: &str, mode: u32) -> &mut Self {
        let h = Self::header(tar::EntryType::Directory, path, mode, 0, 0, 0);
        self.push(h, &[])
    }

    pub fn file(&mut self, path: &str, data: &str) -> &mut Self {
        self.file_owned(path, data, 0o644, 0, 0)
    }

    pub fn file_owned(
        &mut self,
        path: &str,
        data: &str,
        mode: u32,
        uid: u64,
        gid: u64,
    ) -> &mut Self {
        let h = Self::header(
            tar::EntryType::Regular,
            path,
            mode,
            uid,
            gid,
            data.len() as u64,
        );
        self.push(h, data.as_bytes())
    }

    pub fn symlink(&mut self, path: &str, target: &str) -> &mut Self {
        let mut h = Self::header(tar::EntryType::Symlink, path, 0o777, 0, 0, 0);
        h.set_link_name_literal(target).expect("link name");
        self.push(h, &[])
    }

    pub fn hardlink(&mut self, path: &str, target: &str) -> &mut Self {
        let mut h = Self::header(tar::EntryType::Link, path, 0o644, 0, 0, 0);
        h.set_link_name_literal(target).expect("link name");
        self.push(h, &[])
    }

    pub fn char_device(&mut self, path: &str, major: u32, minor: u32) -> &mut Self {
        let mut h = Self::header(tar::EntryType::Char, path, 0o666, 0, 0, 0);
        h.set_device_major(major).expect("major");
        h.set_device_minor(minor).expect("minor");
        self.push(h, &[])
    }

    /// A PAX extended header applying to the next entry.
    pub fn pax(&mut self, records: &[(&str, &[u8])]) -> &mut Self {
        let mut data = Vec::new();
        for (k, v) in records {
            let body_len = 1 + k.len() + 1 + v.len() + 1;
            let mut len = body_len + 1;
            while len != body_len + len.to_string().len() {
                len = body_len + len.to_string().len();
            }
            data.extend_from_slice(format!("{len} {k}=").as_bytes());
            data.extend_from_slice(v);
            data.push(b'\n');
        }
        let h = Self::header(
            tar::EntryType::XHeader,
            "PaxHeader",
            0o644,
            0,
            0,
            data.len() as u64,
        );
        self.push(h, &data)
    }

    pub fn tar(&mut self) -> Vec<u8> {
        let b = std::mem::replace(&mut self.out, tar::Builder::new(Vec::new()));
        b.into_inner().expect("finish")
    }

    pub fn gzip(&mut self) -> Vec<u8> {
        gzip(&self.tar())
    }
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(data).expect("gzip");
    gz.finish().expect("gzip")
}

/// A store in its own temporary directory.
pub struct TestStore {
    pub dir: tempfile::TempDir,
    pub store: garden_image::Store,
}

pub fn config(dir: &Path) -> garden_image::StoreConfig {
    let mut c = garden_image::StoreConfig::new(dir.join("store"));
    c.gc_grace = std::time::Duration::ZERO;
    c
}

pub fn store() -> TestStore {
    store_with(|_| {})
}

pub fn store_with(tweak: impl FnOnce(&mut garden_image::StoreConfig)) -> TestStore {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut c = config(dir.path());
    tweak(&mut c);
    let store = garden_image::Store::open(c).expect("open store");
    TestStore { dir, store }
}

pub fn write(dir: &Path, name: &str, data: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, data).expect("write");
    p
}

/// An overlay mount of `lowers` (top first), unmounted on drop.
pub struct Overlay {
    pub target: PathBuf,
    _dir: tempfile::TempDir,
}

impl Overlay {
    pub fn mount(lowers: &[PathBuf]) -> Overlay {
        let dir = tempfile::tempdir().expect("tempdir");
        let (upper, work, target) = (
            dir.path().join("u"),
            dir.path().join("w"),
            dir.path().join("m"),
        );
        for d in [&upper, &work, &target] {
            std::fs::create_dir(d).expect("mkdir");
        }
        let lower: Vec<String> = lowers.iter().map(|p| p.display().to_string()).collect();
        let opts = format!(
            "lowerdir={},upperdir={},workdir={}",
            lower.join(":"),
            upper.display(),
            work.display()
        );
        let st = Command::new("mount")
            .args(["-t", "overlay", "overlay", "-o", &opts])
            .arg(&target)
            .status()
            .expect("mount");
        assert!(st.success(), "mounting the overlay failed");
        Overlay { target, _dir: dir }
    }
}

impl Drop for Overlay {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.target).status();
    }
}

/// An OCI image layout written from layer tarballs (bottom first), tagged.
pub fn write_layout(dir: &Path, layers: &[Vec<u8>], tag: &str, env: &[&str]) -> Digest {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).expect("mkdir");
    let put = |data: &[u8]| {
        let d = Digest::sha256(data);
        std::fs::write(blobs.join(d.hex()), data).expect("blob");
        d
    };
    let (config, manifest) = image_documents(layers, env);
    put(&config);
    for l in layers {
        put(l);
    }
    let m = put(&manifest);
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": m.to_string(),
            "size": manifest.len(),
            "annotations": {"org.opencontainers.image.ref.name": tag}
        }]
    });
    std::fs::write(
        dir.join("index.json"),
        serde_json::to_vec(&index).expect("json"),
    )
    .expect("index");
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)
        .expect("oci-layout");
    m
}

/// An image's config and OCI manifest for gzip layers (bottom first).
pub fn image_documents(layers: &[Vec<u8>], env: &[&str]) -> (Vec<u8>, Vec<u8>) {
    let diff_ids: Vec<String> = layers
        .iter()
        .map(|l| {
            let mut d = flate2::read::MultiGzDecoder::new(&l[..]);
            let mut raw = Vec::new();
            std::io::Read::read_to_end(&mut d, &mut raw).expect("gunzip");
            Digest::sha256(&raw).to_string()
        })
        .collect();
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {"Env": env, "WorkingDir": "/home/vcap", "User": "1000", "Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids}
    }))
    .expect("json");
    let layer_descs: Vec<serde_json::Value> = layers
        .iter()
        .map(|l| {
            serde_json::json!({
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": Digest::sha256(l).to_string(),
                "size": l.len()
            })
        })
        .collect();
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": Digest::sha256(&config).to_string(),
            "size": config.len()
        },
        "layers": layer_descs
    }))
    .expect("json");
    (config, manifest)
}
pub mod registry;

//! Checkpoints: the model's weights, the optimizer's moments and the trainer's state (step, epoch,
//! mask generator, data order) as safetensors bytes, sealed with the run's data key and written
//! atomically (temporary file, fsync, rename), so a crash or a full disk never leaves a half checkpoint in
//! place of a good one.
//!
//! Tensor names: `model.<var>` for weights (the names `lethe release export` writes without the prefix),
//! `optim.m.<var>` / `optim.v.<var>` for moments. The safetensors metadata holds `lethe.state` (the
//! [`TrainState`] as JSON) and `lethe.config` (the full training configuration).

use std::borrow::Cow;
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use ring::digest::{Context, SHA256};
use safetensors::{Dtype, SafeTensors, View};
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use super::TrainError;
use crate::corpus::sealed::SealedFileWriter;
use crate::vault::stream::{DataKey, OpenReader, StreamContext};

/// Where the trainer is: everything beyond weights and moments needed to continue bit-exactly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// Optimizer steps completed.
    pub step: u64,
    /// Epoch of the next step.
    pub epoch: u64,
    /// Next step's position inside its epoch.
    pub step_in_epoch: u64,
    /// State of the mask generator after the last completed step.
    pub mask_rng: u64,
    pub tokens_seen: u64,
    /// Mean training loss of the epoch so far and how many steps it covers.
    pub epoch_loss_sum: f64,
    pub epoch_loss_steps: u64,
}

/// A tensor's bytes for safetensors (f32 or i64, little-endian, contiguous).
struct Raw {
    dtype: Dtype,
    shape: Vec<usize>,
    bytes: Vec<u8>,
}

impl View for &Raw {
    fn dtype(&self) -> Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.bytes)
    }
    fn data_len(&self) -> usize {
        self.bytes.len()
    }
}

fn raw(t: &Tensor) -> Raw {
    let t = t
        .detach()
        .to_device(Device::Cpu)
        .to_kind(Kind::Float)
        .contiguous();
    let n = t.numel();
    let mut floats = vec![0f32; n];
    t.copy_data(&mut floats, n);
    let mut bytes = Vec::with_capacity(n * 4);
    for f in floats {
        bytes.extend_from_slice(&f.to_le_bytes());
    }
    Raw {
        dtype: Dtype::F32,
        shape: t.size().iter().map(|&d| d as usize).collect(),
        bytes,
    }
}

/// SHA-256 over the model's weights in name order: identical weights, identical hash, whatever else the
/// checkpoint holds.
pub fn weights_sha256(named: &[(String, Tensor)]) -> String {
    let mut sorted: Vec<&(String, Tensor)> = named.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let mut ctx = Context::new(&SHA256);
    for (name, t) in sorted {
        ctx.update(name.as_bytes());
        ctx.update(&raw(t).bytes);
    }
    hex::encode(ctx.finish().as_ref())
}

/// [`weights_sha256`] of the model weights inside checkpoint `bytes` (what a release checks it exports
/// the very weights that were recorded and audited).
pub fn weights_sha256_of(bytes: &[u8]) -> Result<String, TrainError> {
    let decoded = decode(bytes)?;
    let named: Vec<(String, Tensor)> = decoded
        .tensors
        .iter()
        .filter_map(|(k, t)| {
            k.strip_prefix("model.")
                .map(|n| (n.to_string(), t.shallow_clone()))
        })
        .collect();
    Ok(weights_sha256(&named))
}

/// Serialises weights, moments and state into safetensors bytes.
pub fn encode(
    weights: &[(String, Tensor)],
    moments: &[(String, Tensor)],
    state: &TrainState,
    config: &serde_json::Value,
) -> Result<Vec<u8>, TrainError> {
    let mut raws: Vec<(String, Raw)> = Vec::with_capacity(weights.len() + moments.len());
    for (name, t) in weights {
        raws.push((format!("model.{name}"), raw(t)));
    }
    for (name, t) in moments {
        raws.push((format!("optim.{name}"), raw(t)));
    }
    let mut meta = HashMap::new();
    meta.insert(
        "lethe.state".to_string(),
        serde_json::to_string(state).map_err(TrainError::json)?,
    );
    meta.insert("lethe.config".to_string(), config.to_string());
    meta.insert("format".to_string(), "pt".to_string());
    safetensors::serialize(raws.iter().map(|(n, r)| (n.as_str(), r)), Some(meta))
        .map_err(|e| TrainError::Checkpoint(format!("cannot serialise: {e}")))
}

/// A decoded checkpoint: tensors by name, state and configuration.
pub struct Decoded {
    pub tensors: HashMap<String, Tensor>,
    pub state: TrainState,
    pub config: serde_json::Value,
}

pub fn decode(bytes: &[u8]) -> Result<Decoded, TrainError> {
    let bad = |e: String| TrainError::Checkpoint(format!("checkpoint is not valid safetensors: {e}"));
    let (_, meta) = SafeTensors::read_metadata(bytes).map_err(|e| bad(e.to_string()))?;
    let info = meta.metadata().clone().unwrap_or_default();
    let state: TrainState = serde_json::from_str(
        info.get("lethe.state")
            .ok_or_else(|| bad("no lethe.state".into()))?,
    )
    .map_err(|e| bad(e.to_string()))?;
    let config: serde_json::Value = serde_json::from_str(
        info.get("lethe.config")
            .ok_or_else(|| bad("no lethe.config".into()))?,
    )
    .map_err(|e| bad(e.to_string()))?;
    let st = SafeTensors::deserialize(bytes).map_err(|e| bad(e.to_string()))?;
    let mut tensors = HashMap::new();
    for (name, view) in st.tensors() {
        if view.dtype() != Dtype::F32 {
            return Err(bad(format!("tensor {name} is {:?}, expected F32", view.dtype())));
        }
        let floats: Vec<f32> = view
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        let shape: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
        tensors.insert(name, Tensor::from_slice(&floats).view(shape.as_slice()));
    }
    Ok(Decoded {
        tensors,
        state,
        config,
    })
}

pub fn role(step: u64) -> String {
    format!("checkpoint-{step:09}")
}

/// The file of a checkpoint written by one training session (`tag`): several hosts may share the
/// storage root, and a session that lost its run's lock must never overwrite a file the current holder
/// recorded, so each session names its own files.
pub fn file_name(step: u64, tag: &str) -> String {
    if tag.is_empty() {
        format!("{}.sealed", role(step))
    } else {
        format!("{}-{tag}.sealed", role(step))
    }
}

/// A checkpoint file in a run directory that no checkpoint record names: what a session left behind when
/// it was killed between writing and recording, or when it lost the run's lock to another process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unrecorded {
    pub file: String,
    /// The writing session's tag ("" for files named before sessions had tags).
    pub tag: String,
}

/// The checkpoint files in `dir` (sealed ones and the temporary files they are written as) that are not
/// in `recorded`. Other files are never listed. A directory that does not exist holds none.
pub fn unrecorded_files(dir: &Path, recorded: &[&str]) -> std::io::Result<Vec<Unrecorded>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for entry in entries {
        let name = entry?.file_name().to_string_lossy().into_owned();
        let sealed = name
            .strip_prefix('.')
            .and_then(|n| n.strip_suffix(".tmp"))
            .unwrap_or(&name);
        let Some(tag) = checkpoint_tag(sealed) else {
            continue;
        };
        if !recorded.contains(&sealed) || sealed != name {
            out.push(Unrecorded {
                tag: tag.to_string(),
                file: name,
            });
        }
    }
    out.sort_by(|a, b| a.file.cmp(&b.file));
    Ok(out)
}

/// The session tag of a sealed checkpoint file name (`checkpoint-<9 digits>[-<tag>].sealed`), or `None`
/// when the name is not one.
fn checkpoint_tag(name: &str) -> Option<&str> {
    let rest = name.strip_prefix("checkpoint-")?.strip_suffix(".sealed")?;
    let (digits, tag) = match rest.split_once('-') {
        Some((d, t)) if !t.is_empty() => (d, t),
        Some(_) => return None,
        None => (rest, ""),
    };
    (digits.len() == 9 && digits.bytes().all(|b| b.is_ascii_digit())).then_some(tag)
}

/// A checkpoint file as written.
#[derive(Debug, Clone)]
pub struct Written {
    pub file: String,
    pub path: PathBuf,
    pub sha256: String,
    pub bytes: u64,
}

/// Seals `bytes` into `dir/checkpoint-<step>-<tag>.sealed` atomically. On any failure (a full disk included)
/// the temporary file is removed and every earlier checkpoint is left as it was.
#[allow(clippy::too_many_arguments)]
pub fn write_sealed(
    dir: &Path,
    run_id: &str,
    step: u64,
    key: &DataKey,
    key_id: &str,
    tag: &str,
    bytes: &[u8],
) -> Result<Written, TrainError> {
    let file = file_name(step, tag);
    let path = dir.join(&file);
    let tmp_name = format!(".{file}.tmp");
    let tmp = dir.join(&tmp_name);
    let io = |e: std::io::Error| TrainError::CheckpointWrite {
        path: path.display().to_string(),
        source: e,
    };
    // A temporary file left by a crash at this very step is stale: the sealed writer never replaces files.
    let _ = std::fs::remove_file(&tmp);
    // The same sealed-file writer as corpus shards: it hashes the sealed bytes as they go out and fsyncs.
    let result = (|| -> Result<Written, TrainError> {
        let corpus_err = |e: crate::corpus::CorpusError| io(std::io::Error::other(e.to_string()));
        let mut w =
            SealedFileWriter::create(dir, &tmp_name, &role(step), run_id, key, key_id).map_err(corpus_err)?;
        w.write_all(bytes).map_err(io)?;
        let meta = w.finish().map_err(corpus_err)?;
        std::fs::rename(&tmp, &path).map_err(io)?;
        std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
        Ok(Written {
            file: file.clone(),
            path: path.clone(),
            sha256: meta.sha256,
            bytes: meta.bytes,
        })
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Opens and authenticates a sealed checkpoint.
pub fn read_sealed(path: &Path, run_id: &str, step: u64, key: &DataKey) -> Result<Vec<u8>, TrainError> {
    let f = std::fs::File::open(path).map_err(|e| TrainError::CheckpointWrite {
        path: path.display().to_string(),
        source: e,
    })?;
    let mut r = OpenReader::new(
        std::io::BufReader::new(f),
        key,
        &StreamContext::new(run_id, role(step)),
    )
    .map_err(|e| TrainError::Checkpoint(format!("{}: {e}", path.display())))?;
    let mut out = Vec::new();
    std::io::Read::read_to_end(&mut r, &mut out).map_err(|e| {
        TrainError::Checkpoint(format!(
            "{}: {}",
            path.display(),
            crate::vault::stream::StreamError::from_io(e)
        ))
    })?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unrecorded_files_are_the_checkpoint_files_no_record_names() {
        let dir = tempfile::tempdir().unwrap();
        for name in [
            "checkpoint-000000010-aaaa1111.sealed",
            "checkpoint-000000020-aaaa1111.sealed",
            "checkpoint-000000020-bbbb2222.sealed",
            ".checkpoint-000000030-bbbb2222.sealed.tmp",
            "checkpoint-000000005.sealed",
            "checkpoint-000000006.sealed",
            "audit-plan-x.sealed",
            "checkpoint-12.sealed",
            "checkpoint-000000007-.sealed",
            "notes.txt",
        ] {
            std::fs::write(dir.path().join(name), b"x").unwrap();
        }
        let recorded = [
            "checkpoint-000000010-aaaa1111.sealed",
            "checkpoint-000000020-aaaa1111.sealed",
            "checkpoint-000000005.sealed",
        ];
        let found = unrecorded_files(dir.path(), &recorded).unwrap();
        let pairs: Vec<(&str, &str)> = found.iter().map(|u| (u.file.as_str(), u.tag.as_str())).collect();
        assert_eq!(
            pairs,
            vec![
                (".checkpoint-000000030-bbbb2222.sealed.tmp", "bbbb2222"),
                ("checkpoint-000000006.sealed", ""),
                ("checkpoint-000000020-bbbb2222.sealed", "bbbb2222"),
            ]
        );
        assert_eq!(
            unrecorded_files(&dir.path().join("missing"), &recorded).unwrap(),
            vec![]
        );
    }
}

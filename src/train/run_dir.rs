//! A run's output folder: the resume states in `checkpoint-<step>/` (the weights that train,
//! optimizer moments, step, options and inputs; see [`RunDir::save_state`] for why a crash at
//! any instant leaves a complete one), `metrics.csv` (one row per optimizer step),
//! `metrics.svg` (its plot) and `lock` (the pid of the run writing the folder, see
//! [`RunLock`]). The exported model goes to `model/` ([`RunDir::model_dir`]). Folders written
//! before numbered checkpoints hold one `checkpoint/`, still resumed from.

use super::{Learner, TrainOptions};
use crate::{Error, Result};
use burn::module::{Module, ParamGroup};
use burn::optim::ModuleOptimizer;
use burn::store::ModuleRecord;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The single resume-state folder of the old layout.
const LEGACY_STATE_DIR: &str = "checkpoint";
/// The old layout's leftover of a save interrupted between its two renames.
const LEGACY_PREVIOUS_DIR: &str = ".checkpoint.previous";
const STATE_PREFIX: &str = "checkpoint-";
/// Written last into a checkpoint: without it a `checkpoint-<step>/` is not resumed from.
const COMPLETE_FILE: &str = "COMPLETE";
const LOCK_FILE: &str = "lock";
const MODEL_FILE: &str = "model.bpk";
const OPTIMIZER_FILE: &str = "optimizer.bpk";
const STATE_FILE: &str = "trainer_state.json";
const METRICS_FILE: &str = "metrics.csv";
const METRICS_HEADER: &str = "step,lr,loss,eval,tokens_per_s,seconds";
const PLOT_FILE: &str = "metrics.svg";
const EXPORT_DIR: &str = "model";

/// One row of `metrics.csv`.
#[derive(Debug, Clone, PartialEq)]
pub struct StepMetrics {
    /// Optimizer steps done.
    pub step: usize,
    pub lr: f64,
    /// Mean training loss of the step's micro-batches, nats.
    pub loss: f64,
    /// Held-out metric when evaluated: pairwise accuracy (Gram, Bradley–Terry) or loss (Generation).
    pub eval: Option<f64>,
    /// Real (unpadded) tokens per second over the step's training (evaluation excluded).
    pub tokens_per_s: f64,
    /// Wall-clock seconds of the step, its evaluation included: summed over the rows, what
    /// the run cost. `None` in files written before the column existed.
    pub seconds: Option<f64>,
}

/// The settings of a run beyond its [`TrainOptions`] that a resumed run must share, as
/// `(flag, value)` pairs: `("--max-len", "512")`, `("--data", "/abs/pairs.jsonl")`, …
pub type RunInputs = Vec<(String, String)>;

/// What is saved beside the weights and optimizer state so a run resumes where it stopped.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ResumeState {
    pub step: usize,
    pub options: TrainOptions,
    /// Absent from states written before it was recorded: then not compared.
    #[serde(default)]
    pub inputs: RunInputs,
}

/// A run's output folder.
#[derive(Debug, Clone)]
pub struct RunDir {
    path: PathBuf,
}

impl RunDir {
    /// The folder `path`, created if missing.
    pub fn create(path: impl Into<PathBuf>) -> Result<Self> {
        let path = path.into();
        std::fs::create_dir_all(&path).map_err(|e| Error::io(&path, e))?;
        Ok(RunDir { path })
    }

    /// The folder `path`, as it is (for reading a saved run).
    pub fn at(path: impl Into<PathBuf>) -> Self {
        RunDir { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The resume state a run continues from: [`RunDir::latest_checkpoint`], or the old layout's
    /// `checkpoint/` when there is none.
    pub fn resume_state_dir(&self) -> PathBuf {
        self.latest_checkpoint()
            .unwrap_or_else(|| self.path.join(LEGACY_STATE_DIR))
    }

    /// `checkpoint-<step>/`.
    pub fn checkpoint_dir(&self, step: usize) -> PathBuf {
        self.path.join(format!("{STATE_PREFIX}{step}"))
    }

    /// The complete numbered checkpoints (those holding their `COMPLETE` marker), by step.
    pub fn checkpoints(&self) -> Vec<(usize, PathBuf)> {
        let Ok(entries) = std::fs::read_dir(&self.path) else {
            return Vec::new();
        };
        let mut found: Vec<(usize, PathBuf)> = entries
            .filter_map(|entry| {
                let entry = entry.ok()?;
                let name = entry.file_name();
                let step = name.to_str()?.strip_prefix(STATE_PREFIX)?.parse().ok()?;
                let dir = entry.path();
                dir.join(COMPLETE_FILE).is_file().then_some((step, dir))
            })
            .collect();
        found.sort();
        found
    }

    /// The newest complete checkpoint: the numbered one of the highest step, else the old
    /// layout's `checkpoint/` (or the `.checkpoint.previous` an old save interrupted between its
    /// renames left behind). `None` when the folder holds none.
    pub fn latest_checkpoint(&self) -> Option<PathBuf> {
        if let Some((_, dir)) = self.checkpoints().pop() {
            return Some(dir);
        }
        [LEGACY_STATE_DIR, LEGACY_PREVIOUS_DIR]
            .into_iter()
            .map(|name| self.path.join(name))
            .find(|dir| dir.join(STATE_FILE).is_file())
    }

    /// `model/`: the exported Hugging Face directory.
    pub fn model_dir(&self) -> PathBuf {
        self.path.join(EXPORT_DIR)
    }

    /// `metrics.csv`.
    pub fn metrics_path(&self) -> PathBuf {
        self.path.join(METRICS_FILE)
    }

    /// `metrics.svg`.
    pub fn plot_path(&self) -> PathBuf {
        self.path.join(PLOT_FILE)
    }

    /// Save the resume state as `checkpoint-<step>/` so that no crash, kill or power loss at
    /// any instant leaves the folder without a complete checkpoint:
    /// 1. everything is written into a fresh `.checkpoint-<step>.partial/`, each file synced to
    ///    disk, the `COMPLETE` marker last, then the folder itself synced;
    /// 2. it is renamed to `checkpoint-<step>/` and the run folder synced;
    /// 3. only then are older checkpoints removed, all but the newest one below this step (kept
    ///    as the fallback), with the leftovers of interrupted saves and the old layout's folders.
    pub(crate) fn save_state(
        &self,
        model: &Learner,
        optimizer: &ModuleOptimizer,
        state: &ResumeState,
    ) -> Result<()> {
        let step = state.step;
        let target = self.checkpoint_dir(step);
        let staging = self.path.join(format!(".{STATE_PREFIX}{step}.partial"));
        remove_dir_if_present(&staging)?;
        std::fs::create_dir_all(&staging).map_err(|e| Error::io(&staging, e))?;
        // Only the weights that train: the frozen rest is the model the run started from, loaded
        // again on resume (its files are fingerprinted in the inputs).
        let model_path = staging.join(MODEL_FILE);
        let trainable = model.trainable_params().into_iter().map(|(id, _)| id);
        model
            .clone()
            .into_record_group(ParamGroup::from_ids(trainable.collect()))
            .save(&model_path)
            .map_err(|e| Error::checkpoint(&model_path, format!("{e:?}")))?;
        crate::io::sync_file(&model_path)?;
        let optimizer_path = staging.join(OPTIMIZER_FILE);
        optimizer
            .save(&optimizer_path)
            .map_err(|e| Error::checkpoint(&optimizer_path, format!("{e:?}")))?;
        crate::io::sync_file(&optimizer_path)?;
        let json = serde_json::to_vec_pretty(state).map_err(|e| Error::invalid(e.to_string()))?;
        crate::io::write_atomic(staging.join(STATE_FILE), &json)?;
        crate::io::write_atomic(staging.join(COMPLETE_FILE), format!("{step}\n").as_bytes())?;
        crate::io::sync_dir(&staging)?;
        if target.exists() {
            // The same step saved again (a fresh run over an old folder, or a stop right after a
            // periodic save): the older checkpoints stay complete while it is replaced.
            let replaced = self.path.join(format!(".{STATE_PREFIX}{step}.replaced"));
            remove_dir_if_present(&replaced)?;
            std::fs::rename(&target, &replaced).map_err(|e| Error::io(&target, e))?;
            std::fs::rename(&staging, &target).map_err(|e| Error::io(&target, e))?;
            crate::io::sync_dir(&self.path)?;
            remove_dir_if_present(&replaced)?;
        } else {
            std::fs::rename(&staging, &target).map_err(|e| Error::io(&target, e))?;
            crate::io::sync_dir(&self.path)?;
        }
        self.prune(step)
    }

    /// Remove every checkpoint but `checkpoint-<step>/` and the newest complete one below it
    /// (the old layout's `checkpoint/` when that is the only older one), and the leftovers of
    /// interrupted saves.
    fn prune(&self, step: usize) -> Result<()> {
        let complete = self.checkpoints();
        let fallback = complete
            .iter()
            .filter(|(s, _)| *s < step)
            .map(|(s, _)| *s)
            .max();
        let entries = std::fs::read_dir(&self.path).map_err(|e| Error::io(&self.path, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| Error::io(&self.path, e))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let remove = if let Some(n) = name.strip_prefix(STATE_PREFIX) {
                match n.parse::<usize>() {
                    Ok(s) => s != step && Some(s) != fallback,
                    Err(_) => false,
                }
            } else if name == LEGACY_STATE_DIR {
                fallback.is_some()
            } else if name == LEGACY_PREVIOUS_DIR || name == ".checkpoint.partial" {
                true
            } else {
                name.starts_with(&format!(".{STATE_PREFIX}"))
                    && (name.ends_with(".partial") || name.ends_with(".replaced"))
            };
            if remove {
                remove_dir_if_present(&entry.path())?;
            }
        }
        crate::io::sync_dir(&self.path)
    }

    /// The newest complete checkpoint and its saved step and options, refused (naming each
    /// difference) unless `options` and `inputs` may continue them (see [`TrainOptions`]: only
    /// the step budget and the intervals may change; inputs are compared where both record them).
    pub(crate) fn load_state(
        &self,
        options: &TrainOptions,
        inputs: &RunInputs,
    ) -> Result<(ResumeState, PathBuf)> {
        let Some(dir) = self.latest_checkpoint() else {
            return Err(Error::invalid(format!(
                "--resume: no complete checkpoint in {} (start without --resume)",
                self.path.display()
            )));
        };
        let state_path = dir.join(STATE_FILE);
        let text = std::fs::read_to_string(&state_path).map_err(|e| Error::io(&state_path, e))?;
        let state: ResumeState = serde_json::from_str(&text)
            .map_err(|e| Error::checkpoint(&state_path, format!("not a trainer state: {e}")))?;
        let mut differences = state.options.differences(options);
        for (flag, now) in inputs {
            if let Some((_, then)) = state.inputs.iter().find(|(f, _)| f == flag)
                && then != now
            {
                differences.push(format!("{flag}: checkpoint {then}, now {now}"));
            }
        }
        if !differences.is_empty() {
            return Err(Error::invalid(format!(
                "--resume: this run differs from the checkpoint in {} — {}; give the \
                 checkpoint's settings, or another --output to start afresh",
                dir.display(),
                differences.join("; ")
            )));
        }
        Ok((state, dir))
    }

    /// `model`'s trainable weights replaced by the ones saved in `dir` (matched by module path,
    /// their parameter ids restored so the optimizer's moments find them); the frozen rest stays
    /// as loaded from the run's model. A checkpoint holding fewer tensors than the run trains is
    /// refused. Read into memory whole, so the run may later remove the folder it resumed from.
    pub(crate) fn load_weights(dir: &Path, model: Learner) -> Result<Learner> {
        let model_path = dir.join(MODEL_FILE);
        let record = ModuleRecord::from_bytes(read_bytes(&model_path)?)
            .map_err(|e| Error::checkpoint(&model_path, format!("{e:?}")))?;
        let trains = model.trainable_params().len();
        if record.len() < trains {
            return Err(Error::checkpoint(
                &model_path,
                format!(
                    "holds {} tensors, but this run trains {trains}",
                    record.len()
                ),
            ));
        }
        model
            .try_load_record(record.allow_partial(true))
            .map_err(|e| Error::checkpoint(&model_path, format!("{e:?}")))
    }

    /// The AdamW state saved in `dir` (read into memory whole), for the optimizer `options`
    /// describe.
    pub(crate) fn load_optimizer(dir: &Path, options: &TrainOptions) -> Result<ModuleOptimizer> {
        let optimizer_path = dir.join(OPTIMIZER_FILE);
        options
            .adamw()
            .init()
            .from_bytes(read_bytes(&optimizer_path)?)
            .map_err(|e| Error::checkpoint(&optimizer_path, format!("{e:?}")))
    }

    /// Append one row to `metrics.csv` (with the header when the file is new).
    pub fn append_metrics(&self, m: &StepMetrics) -> Result<()> {
        let path = self.metrics_path();
        let fresh = !path.exists();
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        let eval = m.eval.map(|v| format!("{v:.6}")).unwrap_or_default();
        let mut line = String::new();
        if fresh {
            line.push_str(METRICS_HEADER);
            line.push('\n');
        }
        let seconds = m.seconds.map(|v| format!("{v:.3}")).unwrap_or_default();
        line.push_str(&format!(
            "{},{:.6e},{:.6},{eval},{:.1},{seconds}\n",
            m.step, m.lr, m.loss, m.tokens_per_s
        ));
        file.write_all(line.as_bytes())
            .map_err(|e| Error::io(&path, e))
    }

    /// Drop `metrics.csv` rows for steps after `step` (on resume: they were never saved); the
    /// header becomes today's, so rows appended next match it (older rows lack `seconds`).
    pub fn truncate_metrics(&self, step: usize) -> Result<()> {
        let path = self.metrics_path();
        let Ok(text) = std::fs::read_to_string(&path) else {
            return Ok(());
        };
        let kept: String = std::iter::once(METRICS_HEADER)
            .chain(text.lines().skip(1).filter(|line| {
                line.split(',')
                    .next()
                    .and_then(|s| s.parse::<usize>().ok())
                    .is_none_or(|s| s <= step)
            }))
            .map(|line| format!("{line}\n"))
            .collect();
        crate::io::write_atomic(&path, kept.as_bytes())
    }

    /// Plot `metrics.csv` (every step of the run, from before a resume too) into `metrics.svg`.
    pub fn write_plot(&self) -> Result<()> {
        let metrics = read_metrics(&self.metrics_path())?;
        crate::io::write_atomic(self.plot_path(), plot_svg(&metrics).as_bytes())
    }
}

/// A file's bytes in memory (tensors loaded from a path may read it lazily, after its
/// checkpoint was pruned).
fn read_bytes(path: &Path) -> Result<burn::tensor::Bytes> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    Ok(burn::tensor::Bytes::from_bytes_vec(bytes))
}

fn remove_dir_if_present(dir: &Path) -> Result<()> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io(dir, e)),
        _ => Ok(()),
    }
}

/// The output folder's `lock` file, created (never overwritten) holding this process's id while
/// a run writes the folder, removed when dropped. A second run on the folder is refused while
/// the holder lives; a lock whose process is gone (checked in `/proc` on Linux) is taken over.
#[derive(Debug)]
pub struct RunLock {
    path: PathBuf,
}

impl RunLock {
    /// Lock `dir` (which must exist) for this process.
    pub fn acquire(dir: &Path) -> Result<Self> {
        let path = dir.join(LOCK_FILE);
        let pid = std::process::id();
        loop {
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(mut file) => {
                    file.write_all(format!("{pid}\n").as_bytes())
                        .and_then(|()| file.sync_all())
                        .map_err(|e| Error::io(&path, e))?;
                    return Ok(RunLock { path });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let text = std::fs::read_to_string(&path).unwrap_or_default();
                    match text.trim().parse::<u32>() {
                        Ok(holder) if process_alive(holder) => {
                            return Err(Error::invalid(format!(
                                "{}: another run (pid {holder}) is writing this folder; wait \
                                 for it to end or give another --output",
                                dir.display()
                            )));
                        }
                        Ok(holder) => {
                            eprintln!(
                                "{}: taking over the lock of pid {holder}, which is no longer \
                                 running",
                                dir.display()
                            );
                            match std::fs::remove_file(&path) {
                                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                                    return Err(Error::io(&path, e));
                                }
                                _ => {}
                            }
                        }
                        Err(_) => {
                            return Err(Error::invalid(format!(
                                "{}: locked by {} without a process id; remove it if no run \
                                 is writing this folder",
                                dir.display(),
                                path.display()
                            )));
                        }
                    }
                }
                Err(e) => return Err(Error::io(&path, e)),
            }
        }
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        let ours = std::fs::read_to_string(&self.path)
            .is_ok_and(|text| text.trim() == std::process::id().to_string());
        if ours {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Whether process `pid` is running (`/proc/<pid>` on Linux; elsewhere assumed so).
fn process_alive(pid: u32) -> bool {
    if cfg!(target_os = "linux") {
        Path::new(&format!("/proc/{pid}")).exists()
    } else {
        true
    }
}

/// Read `metrics.csv` back (rows that do not parse are skipped; files from before the
/// `seconds` column read with `seconds: None`).
pub fn read_metrics(path: &Path) -> Result<Vec<StepMetrics>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    Ok(text
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split(',').collect();
            Some(StepMetrics {
                step: f.first()?.parse().ok()?,
                lr: f.get(1)?.parse().ok()?,
                loss: f.get(2)?.parse().ok()?,
                eval: f.get(3).and_then(|v| v.parse().ok()),
                tokens_per_s: f.get(4)?.parse().ok()?,
                seconds: f.get(5).and_then(|v| v.parse().ok()),
            })
        })
        .collect())
}

/// An SVG line plot of the training loss (blue, left axis) and the held-out metric (orange
/// dots and line, right axis) against the step, each axis spanning its series' range.
pub fn plot_svg(metrics: &[StepMetrics]) -> String {
    const W: f64 = 640.0;
    const H: f64 = 360.0;
    const PAD: f64 = 48.0;
    let last_step = metrics.iter().map(|m| m.step).max().unwrap_or(1).max(1) as f64;
    let x = |step: usize| PAD + (W - 2.0 * PAD) * step as f64 / last_step;
    let series = |values: Vec<(usize, f64)>, color: &str, label: &str, right: bool| -> String {
        let finite: Vec<(usize, f64)> = values.into_iter().filter(|v| v.1.is_finite()).collect();
        let (lo, hi) = finite
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
                (lo.min(v.1), hi.max(v.1))
            });
        if finite.is_empty() {
            return String::new();
        }
        let span = if hi > lo { hi - lo } else { 1.0 };
        let y = |v: f64| H - PAD - (H - 2.0 * PAD) * (v - lo) / span;
        let points: Vec<String> = finite
            .iter()
            .map(|&(s, v)| format!("{:.1},{:.1}", x(s), y(v)))
            .collect();
        let axis_x = if right { W - PAD + 4.0 } else { 4.0 };
        let anchor = "start";
        let mut out = format!(
            "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"1.5\" points=\"{}\"/>\n",
            points.join(" ")
        );
        for p in &points {
            let (px, py) = p.split_once(',').unwrap_or(("0", "0"));
            out.push_str(&format!(
                "<circle cx=\"{px}\" cy=\"{py}\" r=\"2\" fill=\"{color}\"/>\n"
            ));
        }
        out.push_str(&format!(
            "<text x=\"{axis_x}\" y=\"{:.1}\" fill=\"{color}\" font-size=\"11\" text-anchor=\"{anchor}\">{hi:.4}</text>\n\
             <text x=\"{axis_x}\" y=\"{:.1}\" fill=\"{color}\" font-size=\"11\" text-anchor=\"{anchor}\">{lo:.4}</text>\n\
             <text x=\"{axis_x}\" y=\"{:.1}\" fill=\"{color}\" font-size=\"12\" text-anchor=\"{anchor}\">{label}</text>\n",
            y(hi) + 4.0,
            y(lo) + 4.0,
            PAD - 20.0,
        ));
        out
    };
    let loss = series(
        metrics.iter().map(|m| (m.step, m.loss)).collect(),
        "#1f77b4",
        "train loss",
        false,
    );
    let eval = series(
        metrics
            .iter()
            .filter_map(|m| Some((m.step, m.eval?)))
            .collect(),
        "#ff7f0e",
        "eval",
        true,
    );
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" font-family=\"sans-serif\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <line x1=\"{PAD}\" y1=\"{b}\" x2=\"{r}\" y2=\"{b}\" stroke=\"black\"/>\n\
         <text x=\"{PAD}\" y=\"{t}\" font-size=\"11\">0</text>\n\
         <text x=\"{r}\" y=\"{t}\" font-size=\"11\" text-anchor=\"end\">step {last_step}</text>\n\
         {loss}{eval}</svg>\n",
        b = H - PAD,
        r = W - PAD,
        t = H - PAD + 16.0,
    )
}

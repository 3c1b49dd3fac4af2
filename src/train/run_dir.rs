//! A run's output folder: the resume state in `checkpoint/` (weights, optimizer moments, step
//! and options, written atomically), `metrics.csv` (one row per optimizer step) and
//! `metrics.svg` (its plot). The exported model goes to `model/` ([`RunDir::model_dir`]).

use super::{Learner, TrainOptions};
use crate::{Error, Result};
use burn::module::Module;
use burn::optim::{AdamWConfig, ModuleOptimizer};
use burn::store::ModuleRecord;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

const STATE_DIR: &str = "checkpoint";
const MODEL_FILE: &str = "model.bpk";
const OPTIMIZER_FILE: &str = "optimizer.bpk";
const STATE_FILE: &str = "trainer_state.json";
const METRICS_FILE: &str = "metrics.csv";
const METRICS_HEADER: &str = "step,lr,loss,eval,tokens_per_s";
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
    /// Real (unpadded) tokens per second over the step.
    pub tokens_per_s: f64,
}

/// What is saved beside the weights and optimizer state so a run resumes where it stopped.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ResumeState {
    pub step: usize,
    pub options: TrainOptions,
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

    /// `checkpoint/`: the resume state.
    pub fn resume_state_dir(&self) -> PathBuf {
        self.path.join(STATE_DIR)
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

    /// Write the resume state atomically: into a temporary sibling directory, then renamed over
    /// `checkpoint/`.
    pub(crate) fn save_state(
        &self,
        model: &Learner,
        optimizer: &ModuleOptimizer,
        state: &ResumeState,
    ) -> Result<()> {
        let dir = self.resume_state_dir();
        let staging = self.path.join(format!(".{STATE_DIR}.partial"));
        let previous = self.path.join(format!(".{STATE_DIR}.previous"));
        for stale in [&staging, &previous] {
            if stale.exists() {
                std::fs::remove_dir_all(stale).map_err(|e| Error::io(stale, e))?;
            }
        }
        std::fs::create_dir_all(&staging).map_err(|e| Error::io(&staging, e))?;
        let model_path = staging.join(MODEL_FILE);
        model
            .clone()
            .save_file(&model_path)
            .map_err(|e| Error::checkpoint(&model_path, format!("{e:?}")))?;
        let optimizer_path = staging.join(OPTIMIZER_FILE);
        optimizer
            .save(&optimizer_path)
            .map_err(|e| Error::checkpoint(&optimizer_path, format!("{e:?}")))?;
        let json = serde_json::to_vec_pretty(state).map_err(|e| Error::invalid(e.to_string()))?;
        crate::io::write_atomic(staging.join(STATE_FILE), &json)?;
        if dir.exists() {
            std::fs::rename(&dir, &previous).map_err(|e| Error::io(&dir, e))?;
        }
        std::fs::rename(&staging, &dir).map_err(|e| Error::io(&dir, e))?;
        if previous.exists() {
            std::fs::remove_dir_all(&previous).map_err(|e| Error::io(&previous, e))?;
        }
        Ok(())
    }

    /// The saved step and options, refused unless `options` may continue them (see
    /// [`TrainOptions`]: only the step budget and the intervals may change).
    pub(crate) fn load_state(&self, options: &TrainOptions) -> Result<ResumeState> {
        let state_path = self.resume_state_dir().join(STATE_FILE);
        let text = std::fs::read_to_string(&state_path).map_err(|e| Error::io(&state_path, e))?;
        let state: ResumeState = serde_json::from_str(&text)
            .map_err(|e| Error::checkpoint(&state_path, format!("not a trainer state: {e}")))?;
        if !state.options.resumable_with(options) {
            return Err(Error::invalid(format!(
                "--resume: the options differ from the checkpoint's ({}): {:?}",
                state_path.display(),
                state.options
            )));
        }
        Ok(state)
    }

    /// `model`'s weights replaced by the saved ones (matched by parameter id).
    pub(crate) fn load_weights(&self, model: Learner) -> Result<Learner> {
        let model_path = self.resume_state_dir().join(MODEL_FILE);
        let record = ModuleRecord::load(&model_path)
            .map_err(|e| Error::checkpoint(&model_path, format!("{e:?}")))?;
        model
            .try_load_record(record)
            .map_err(|e| Error::checkpoint(&model_path, format!("{e:?}")))
    }

    /// The saved AdamW state.
    pub(crate) fn load_optimizer(&self, weight_decay: f64) -> Result<ModuleOptimizer> {
        let optimizer_path = self.resume_state_dir().join(OPTIMIZER_FILE);
        AdamWConfig::new()
            .with_weight_decay(weight_decay as f32)
            .init()
            .load(&optimizer_path)
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
        line.push_str(&format!(
            "{},{:.6e},{:.6},{eval},{:.1}\n",
            m.step, m.lr, m.loss, m.tokens_per_s
        ));
        file.write_all(line.as_bytes())
            .map_err(|e| Error::io(&path, e))
    }

    /// Drop `metrics.csv` rows for steps after `step` (on resume: they were never saved).
    pub fn truncate_metrics(&self, step: usize) -> Result<()> {
        let path = self.metrics_path();
        let Ok(text) = std::fs::read_to_string(&path) else {
            return Ok(());
        };
        let kept: String = text
            .lines()
            .filter(|line| {
                line.split(',')
                    .next()
                    .and_then(|s| s.parse::<usize>().ok())
                    .is_none_or(|s| s <= step)
            })
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

/// Read `metrics.csv` back (rows that do not parse are skipped).
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

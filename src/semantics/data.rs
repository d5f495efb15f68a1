//! Datasets: source resolution, loading, selection, scaling, seeded noise.

use super::checker::{Checker, ItemRef, Locals};
use super::value::{Exact, Value};
use super::{CheckedDataset, DataSource, Selection};
use crate::diagnostics::Diagnostic;
use crate::formats::{self, Dataset, DatasetSource, PixelLayout};
use crate::source::Span;
use crate::syntax::ast;
use std::collections::HashMap;

/// The dataset sources of the language.
pub const SOURCES: &[&str] = &["npz", "npy", "idx", "cifar", "csv", "noise"];

impl<'a> Checker<'a> {
    pub(super) fn dataset(&mut self, r: ItemRef) -> Option<usize> {
        if let Some(v) = self.datasets.get(&r) {
            return *v;
        }
        let ast::Item::Dataset(d) = self.item(r).clone() else {
            return None;
        };
        let result = self.check_dataset(r.module, &d);
        let idx = result.map(|cd| {
            self.program.datasets.push(cd);
            self.program.datasets.len() - 1
        });
        self.datasets.insert(r, idx);
        idx
    }

    fn check_dataset(&mut self, module: usize, d: &ast::DatasetDecl) -> Option<CheckedDataset> {
        let call = &d.source;
        let kind = call.callee.name.as_str();
        if !SOURCES.contains(&kind) {
            let mut diag = Diagnostic::error("E0113", format!("unknown dataset source `{kind}`"))
                .with_primary(call.callee.span, "not a dataset source")
                .with_note(format!("sources: {}", SOURCES.join(", ")));
            if let Some(s) = super::checker::closest(kind, SOURCES.iter().copied()) {
                diag = diag.with_help(format!("did you mean `{s}`?"));
            }
            self.error(diag);
            return None;
        }
        let transforms = self.transforms(module, d);
        let args = self.source_args(module, call)?;
        let (scale, selection) = transforms?;
        let (source, raw, labeled) = if kind == "noise" {
            let shape = self.req(call, &args, "shape")?;
            let shape = self.as_shape(&shape.0, shape.1, "the noise shape")?;
            let count = self.req(call, &args, "count")?;
            let count = self.as_positive(&count.0, count.1, "the noise count")?;
            let seed = self.req(call, &args, "seed")?;
            let seed = self.as_seed(&seed.0, seed.1)?;
            let numel: usize = shape.iter().product();
            let total = numel.checked_mul(count).filter(|t| *t <= 1 << 30);
            let Some(total) = total else {
                self.error(
                    Diagnostic::error("E0204", "noise dataset is too large")
                        .with_primary(call.span, "more than 2^30 values"),
                );
                return None;
            };
            debug_assert!(total <= 1 << 30);
            let data = match Dataset::noise(count, &shape, seed, 0.0, 1.0) {
                Ok(data) => data,
                Err(e) => {
                    self.error(
                        Diagnostic::error("E0204", e)
                            .with_primary(call.span, "invalid noise dataset"),
                    );
                    return None;
                }
            };
            (DataSource::Noise { shape, count, seed }, data, false)
        } else {
            let src = self.file_source(module, kind, call, &args)?;
            let data = match formats::load_dataset(&src) {
                Ok(data) => data,
                Err(e) => {
                    self.format_error(&e, call.span);
                    return None;
                }
            };
            (DataSource::File(src), data, true)
        };
        let scale = match scale {
            Some(s) => s,
            None if labeled => Exact {
                num: 1,
                den: 255,
                value: 1.0 / 255.0,
            },
            None => Exact {
                num: 1,
                den: 1,
                value: 1.0,
            },
        };
        let explicit_scale = d
            .transforms
            .iter()
            .any(|t| matches!(t.kind, ast::TransformKind::Scale(_)));
        if labeled
            && !explicit_scale
            && raw.images.iter().all(|x| *x <= 1.0)
            && raw.images.iter().any(|x| x.fract() != 0.0)
        {
            self.diags.push(
                Diagnostic::warning("E0312", format!("dataset `{}` looks already scaled to [0, 1]", d.name.name))
                    .with_primary(call.span, "fractional pixels, none above 1")
                    .with_help("files default to `| scale 1/255`; write `| scale 1` if the values are already in [0, 1]"),
            );
        }
        let data = self.select(d, raw, &selection, labeled)?;
        let images: Vec<f64> = data.images.iter().map(|x| x * scale.value).collect();
        if let Some(i) = images.iter().position(|x| !x.is_finite()) {
            self.error(
                Diagnostic::error(
                    "E0304",
                    format!(
                        "dataset `{}` contains a non-finite pixel (value index {i})",
                        d.name.name
                    ),
                )
                .with_primary(call.span, "NaN or infinity in the data"),
            );
            return None;
        }
        if images.iter().any(|x| !(0.0..=1.0).contains(x)) {
            self.diags.push(
                Diagnostic::warning(
                    "E0312",
                    format!(
                        "dataset `{}` has pixels outside [0, 1] after scaling",
                        d.name.name
                    ),
                )
                .with_primary(call.span, format!("scaled by {scale}"))
                .with_help("set the pixel factor with `| scale 1/255` (files default to 1/255)"),
            );
        }
        Some(CheckedDataset {
            name: d.name.name.clone(),
            span: d.span,
            source,
            scale,
            selection,
            labeled,
            data: Dataset {
                shape: data.shape,
                images,
                labels: data.labels,
            },
        })
    }

    fn req(
        &mut self,
        call: &ast::Call,
        args: &HashMap<String, (Value, Span)>,
        key: &str,
    ) -> Option<(Value, Span)> {
        match args.get(key) {
            Some(v) => Some(v.clone()),
            None => {
                self.error(
                    Diagnostic::error(
                        "E0110",
                        format!("`{}` is missing argument `{key}`", call.callee.name),
                    )
                    .with_primary(call.span, "in this source"),
                );
                None
            }
        }
    }

    /// Arguments of a source call: positional ones are named by the source's signature.
    fn source_args(
        &mut self,
        module: usize,
        call: &ast::Call,
    ) -> Option<HashMap<String, (Value, Span)>> {
        let sig: &[&str] = match call.callee.name.as_str() {
            "npz" | "cifar" => &["path"],
            "npy" | "idx" => &["images", "labels"],
            "csv" => &["path", "shape", "layout"],
            _ => &["shape", "count", "seed"],
        };
        let mut out = HashMap::new();
        let mut ok = true;
        for (i, a) in call.args.iter().enumerate() {
            let key = match &a.name {
                Some(n) => sig.iter().find(|s| **s == n.name).copied(),
                None => sig.get(i).copied(),
            };
            let Some(key) = key else {
                self.error(
                    Diagnostic::error(
                        "E0110",
                        format!("unexpected argument to `{}`", call.callee.name),
                    )
                    .with_primary(a.span, "unexpected")
                    .with_note(format!("parameters: {}", sig.join(", "))),
                );
                ok = false;
                continue;
            };
            // `layout: chw | hwc` is a word, not a constant.
            if key == "layout" {
                if let ast::ExprKind::Name(n) = &a.value.kind {
                    if n == "chw" || n == "hwc" {
                        out.insert(key.to_string(), (Value::Str(n.clone()), a.value.span));
                        continue;
                    }
                }
                self.error(
                    Diagnostic::error("E0112", "invalid value for `layout`")
                        .with_primary(a.value.span, "expected `chw` or `hwc`"),
                );
                ok = false;
                continue;
            }
            match self.eval(module, &a.value, &Locals::new()) {
                Some(v) => {
                    out.insert(key.to_string(), (v, a.value.span));
                }
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    fn path_arg(
        &mut self,
        module: usize,
        call: &ast::Call,
        args: &HashMap<String, (Value, Span)>,
        key: &str,
    ) -> Option<std::path::PathBuf> {
        let (v, span) = self.req(call, args, key)?;
        let s = self.as_string(&v, span)?;
        let path = self.resolve_path(module, &s);
        if !path.is_file() {
            self.missing_file(&path, span, "data");
            return None;
        }
        Some(path)
    }

    fn file_source(
        &mut self,
        module: usize,
        kind: &str,
        call: &ast::Call,
        args: &HashMap<String, (Value, Span)>,
    ) -> Option<DatasetSource> {
        Some(match kind {
            "npz" => DatasetSource::Npz(self.path_arg(module, call, args, "path")?),
            "cifar" => DatasetSource::CifarBinary(self.path_arg(module, call, args, "path")?),
            "npy" | "idx" => {
                let images = self.path_arg(module, call, args, "images");
                let labels = self.path_arg(module, call, args, "labels");
                let (images, labels) = (images?, labels?);
                if kind == "npy" {
                    DatasetSource::Npy { images, labels }
                } else {
                    DatasetSource::Idx { images, labels }
                }
            }
            _ => {
                let path = self.path_arg(module, call, args, "path");
                let shape = self
                    .req(call, args, "shape")
                    .and_then(|(v, s)| self.as_shape(&v, s, "the CSV sample shape"));
                let layout = match args.get("layout") {
                    Some((Value::Str(s), _)) if s == "hwc" => PixelLayout::Hwc,
                    _ => PixelLayout::Chw,
                };
                DatasetSource::Csv {
                    path: path?,
                    shape: shape?,
                    layout,
                }
            }
        })
    }

    /// The pixel scale and the selection given by the transforms.
    fn transforms(
        &mut self,
        module: usize,
        d: &ast::DatasetDecl,
    ) -> Option<(Option<Exact>, Selection)> {
        let mut scale = None;
        let mut selection = None;
        let mut scale_span: Option<Span> = None;
        let mut sel_span: Option<Span> = None;
        let mut ok = true;
        let locals = Locals::new();
        for t in &d.transforms {
            let is_scale = matches!(t.kind, ast::TransformKind::Scale(_));
            let prev = if is_scale {
                &mut scale_span
            } else {
                &mut sel_span
            };
            if let Some(p) = *prev {
                self.error(
                    Diagnostic::error(
                        "E0113",
                        if is_scale {
                            "the pixel scale is given twice"
                        } else {
                            "only one selection (`first`, `range`, `sample`) is allowed"
                        },
                    )
                    .with_primary(t.span, "second one here")
                    .with_secondary(p, "first one here"),
                );
                ok = false;
                continue;
            }
            *prev = Some(t.span);
            match &t.kind {
                ast::TransformKind::Scale(e) => match self.eval(module, e, &locals) {
                    Some(Value::Num(r)) if r.num > 0 => match Exact::from_rational(r) {
                        Some(x) => scale = Some(x),
                        None => ok = false,
                    },
                    Some(Value::Num(r)) => {
                        self.error(
                            Diagnostic::error(
                                "E0204",
                                format!("the pixel scale must be positive, found {r}"),
                            )
                            .with_primary(e.span, "here"),
                        );
                        ok = false;
                    }
                    Some(other) => {
                        self.type_error::<()>(e.span, "a number", &other);
                        ok = false;
                    }
                    None => ok = false,
                },
                ast::TransformKind::First(e) => {
                    match self
                        .eval(module, e, &locals)
                        .and_then(|v| self.as_positive(&v, e.span, "the sample count"))
                    {
                        Some(n) => selection = Some(Selection::First(n)),
                        None => ok = false,
                    }
                }
                ast::TransformKind::Range(a, b) => {
                    let av = self
                        .eval(module, a, &locals)
                        .and_then(|v| self.as_usize(&v, a.span, "the range start"));
                    let bv = self
                        .eval(module, b, &locals)
                        .and_then(|v| self.as_usize(&v, b.span, "the range end"));
                    match (av, bv) {
                        (Some(x), Some(y)) if x < y => selection = Some(Selection::Range(x, y)),
                        (Some(x), Some(y)) => {
                            self.error(
                                Diagnostic::error("E0309", format!("empty range {x}..{y}"))
                                    .with_primary(t.span, "the end must be greater than the start"),
                            );
                            ok = false;
                        }
                        _ => ok = false,
                    }
                }
                ast::TransformKind::Sample { count, seed } => {
                    let c = self
                        .eval(module, count, &locals)
                        .and_then(|v| self.as_positive(&v, count.span, "the sample count"));
                    let s = self
                        .eval(module, seed, &locals)
                        .and_then(|v| self.as_seed(&v, seed.span));
                    match (c, s) {
                        (Some(count), Some(seed)) => {
                            selection = Some(Selection::Sample { count, seed })
                        }
                        _ => ok = false,
                    }
                }
            }
        }
        ok.then(|| (scale, selection.unwrap_or(Selection::All)))
    }

    fn select(
        &mut self,
        d: &ast::DatasetDecl,
        data: Dataset,
        sel: &Selection,
        labeled: bool,
    ) -> Option<Dataset> {
        let numel: usize = data.shape.iter().product();
        let n = data.images.len().checked_div(numel).unwrap_or(0);
        if labeled && data.labels.len() != n {
            self.error(
                Diagnostic::error(
                    "E0302",
                    format!(
                        "dataset `{}` has {n} images but {} labels",
                        d.name.name,
                        data.labels.len()
                    ),
                )
                .with_primary(d.source.span, "images and labels disagree"),
            );
            return None;
        }
        if n == 0 {
            self.error(
                Diagnostic::error("E0307", format!("dataset `{}` is empty", d.name.name))
                    .with_primary(d.source.span, "no samples here"),
            );
            return None;
        }
        let sel_span = d
            .transforms
            .iter()
            .rev()
            .find(|t| !matches!(t.kind, ast::TransformKind::Scale(_)))
            .map(|t| t.span);
        let out_of_range = |c: &mut Self, want: usize| {
            c.error(
                Diagnostic::error(
                    "E0309",
                    format!(
                        "selection needs {want} samples but dataset `{}` has only {n}",
                        d.name.name
                    ),
                )
                .with_primary(sel_span.unwrap_or(d.span), "out of range")
                .with_secondary(d.source.span, format!("{n} samples")),
            );
        };
        let selected = match *sel {
            Selection::All => Ok(data),
            Selection::First(k) if k <= n => data.select_first(k),
            Selection::Range(a, b) if b <= n => data.select_range(a, b),
            Selection::Sample { count, seed } if count <= n => data.sample(count, seed),
            Selection::First(k) | Selection::Sample { count: k, .. } => {
                out_of_range(self, k);
                return None;
            }
            Selection::Range(_, b) => {
                out_of_range(self, b);
                return None;
            }
        };
        match selected {
            Ok(mut data) => {
                if !labeled {
                    data.labels.clear();
                }
                Some(data)
            }
            Err(e) => {
                self.error(
                    Diagnostic::error("E0309", e)
                        .with_primary(sel_span.unwrap_or(d.span), "invalid selection"),
                );
                None
            }
        }
    }
}

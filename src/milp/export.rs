//! `.lp` (CPLEX LP) and free `.mps` writers for [`Model`], readable by Gurobi, CPLEX and
//! HiGHS, plus readers for the subset the writers produce (used to check round trips).
//!
//! Every variable gets explicit bounds (readers differ on integer defaults), binaries are
//! written as general integers with bounds inside `[0, 1]`, numbers in shortest round-trip
//! exponent form (`1.5e-3`), so a written model reads back bit-identical.

use std::collections::HashMap;
use std::io::Write;

use super::model::{Model, Sense, VarKind};
use super::MilpError;

/// Terms per line in `.lp` rows (CPLEX limits line length).
const TERMS_PER_LINE: usize = 6;

fn num(x: f64) -> String {
    if x == f64::INFINITY {
        "+inf".to_string()
    } else if x == f64::NEG_INFINITY {
        "-inf".to_string()
    } else {
        format!("{x:e}")
    }
}

fn io(e: std::io::Error) -> MilpError {
    MilpError::Io(e.to_string())
}

/// Writes the model in CPLEX LP format; `comment` lines go in a `\` header.
pub fn write_lp(model: &Model, comment: &str, out: &mut impl Write) -> Result<(), MilpError> {
    model.validate()?;
    let mut s = String::new();
    for line in comment.lines() {
        s.push_str(&format!("\\ {line}\n"));
    }
    s.push_str("Minimize\n obj:");
    let obj: Vec<(usize, f64)> = (0..model.vars.len())
        .filter(|&j| model.vars[j].obj != 0.0)
        .map(|j| (j, model.vars[j].obj))
        .collect();
    push_terms(&mut s, model, &obj);
    s.push_str("\nSubject To\n");
    for r in &model.rows {
        s.push_str(&format!(" {}:", r.name));
        if r.coeffs.is_empty() {
            if model.vars.is_empty() {
                return Err(MilpError::InvalidModel(format!(
                    "row `{}` is empty",
                    r.name
                )));
            }
            push_terms(&mut s, model, &[(0, 0.0)]);
        } else {
            push_terms(&mut s, model, &r.coeffs);
        }
        let op = match r.sense {
            Sense::Le => "<=",
            Sense::Ge => ">=",
            Sense::Eq => "=",
        };
        s.push_str(&format!(" {op} {}\n", num(r.rhs)));
    }
    s.push_str("Bounds\n");
    for v in &model.vars {
        if v.lo == v.hi {
            s.push_str(&format!(" {} = {}\n", v.name, num(v.lo)));
        } else if v.lo == f64::NEG_INFINITY && v.hi == f64::INFINITY {
            s.push_str(&format!(" {} free\n", v.name));
        } else {
            s.push_str(&format!(" {} <= {} <= {}\n", num(v.lo), v.name, num(v.hi)));
        }
    }
    let ints: Vec<&str> = model
        .vars
        .iter()
        .filter(|v| v.kind == VarKind::Binary)
        .map(|v| v.name.as_str())
        .collect();
    if !ints.is_empty() {
        s.push_str("Generals\n");
        for chunk in ints.chunks(TERMS_PER_LINE) {
            s.push_str(&format!(" {}\n", chunk.join(" ")));
        }
    }
    s.push_str("End\n");
    out.write_all(s.as_bytes()).map_err(io)
}

fn push_terms(s: &mut String, model: &Model, terms: &[(usize, f64)]) {
    for (k, &(j, c)) in terms.iter().enumerate() {
        if k > 0 && k % TERMS_PER_LINE == 0 {
            s.push_str("\n   ");
        }
        let sign = if c.is_sign_negative() { '-' } else { '+' };
        s.push_str(&format!(" {sign} {} {}", num(c.abs()), model.vars[j].name));
    }
}

/// Writes the model in free MPS format; `comment` lines go in `*` lines.
pub fn write_mps(model: &Model, comment: &str, out: &mut impl Write) -> Result<(), MilpError> {
    model.validate()?;
    let mut s = String::new();
    for line in comment.lines() {
        s.push_str(&format!("* {line}\n"));
    }
    let name = if model.name.is_empty() || model.name.contains(char::is_whitespace) {
        "model"
    } else {
        &model.name
    };
    s.push_str(&format!("NAME {name}\nROWS\n N obj\n"));
    for r in &model.rows {
        let t = match r.sense {
            Sense::Le => 'L',
            Sense::Ge => 'G',
            Sense::Eq => 'E',
        };
        s.push_str(&format!(" {t} {}\n", r.name));
    }
    // Column-major view of the rows.
    let mut cols: Vec<Vec<(usize, f64)>> = vec![Vec::new(); model.vars.len()];
    for (i, r) in model.rows.iter().enumerate() {
        for &(j, c) in &r.coeffs {
            cols[j].push((i, c));
        }
    }
    s.push_str("COLUMNS\n");
    let mut in_int = false;
    for (j, v) in model.vars.iter().enumerate() {
        let is_int = v.kind == VarKind::Binary;
        if is_int != in_int {
            let m = if is_int { "INTORG" } else { "INTEND" };
            s.push_str(&format!(" MARKER 'MARKER' '{m}'\n"));
            in_int = is_int;
        }
        s.push_str(&format!(" {} obj {}\n", v.name, num(v.obj)));
        for &(i, c) in &cols[j] {
            s.push_str(&format!(" {} {} {}\n", v.name, model.rows[i].name, num(c)));
        }
    }
    if in_int {
        s.push_str(" MARKER 'MARKER' 'INTEND'\n");
    }
    s.push_str("RHS\n");
    for r in &model.rows {
        if r.rhs != 0.0 {
            s.push_str(&format!(" RHS {} {}\n", r.name, num(r.rhs)));
        }
    }
    s.push_str("BOUNDS\n");
    for v in &model.vars {
        if v.lo == v.hi {
            s.push_str(&format!(" FX BND {} {}\n", v.name, num(v.lo)));
            continue;
        }
        match (v.lo.is_finite(), v.hi.is_finite()) {
            (false, false) => s.push_str(&format!(" FR BND {}\n", v.name)),
            (lo_f, hi_f) => {
                if lo_f {
                    s.push_str(&format!(" LO BND {} {}\n", v.name, num(v.lo)));
                } else {
                    s.push_str(&format!(" MI BND {}\n", v.name));
                }
                if hi_f {
                    s.push_str(&format!(" UP BND {} {}\n", v.name, num(v.hi)));
                } else {
                    s.push_str(&format!(" PL BND {}\n", v.name));
                }
            }
        }
    }
    s.push_str("ENDATA\n");
    out.write_all(s.as_bytes()).map_err(io)
}

fn parse_err(line: usize, msg: &str) -> MilpError {
    MilpError::Parse(format!("line {line}: {msg}"))
}

fn parse_num(tok: &str, line: usize) -> Result<f64, MilpError> {
    match tok {
        "+inf" | "inf" | "+infinity" | "infinity" => Ok(f64::INFINITY),
        "-inf" | "-infinity" => Ok(f64::NEG_INFINITY),
        _ => tok
            .parse::<f64>()
            .ok()
            .filter(|x| !x.is_nan())
            .ok_or_else(|| parse_err(line, &format!("bad number `{tok}`"))),
    }
}

/// Reads the free-MPS subset [`write_mps`] produces (no RANGES, no negative objective row
/// RHS); integer columns must have bounds inside `[0, 1]`.
pub fn read_mps(text: &str) -> Result<Model, MilpError> {
    let mut model = Model::new("");
    let mut row_index: HashMap<String, usize> = HashMap::new();
    let mut var_index: HashMap<String, usize> = HashMap::new();
    let mut obj_name: Option<String> = None;
    let mut section = "";
    let mut in_int = false;
    let mut ended = false;
    for (ln0, raw) in text.lines().enumerate() {
        let ln = ln0 + 1;
        if raw.starts_with('*') || raw.trim().is_empty() {
            continue;
        }
        let toks: Vec<&str> = raw.split_whitespace().collect();
        if !raw.starts_with(char::is_whitespace) {
            section = match toks[0] {
                "NAME" => {
                    model.name = toks.get(1).unwrap_or(&"").to_string();
                    "NAME"
                }
                "ROWS" | "COLUMNS" | "RHS" | "BOUNDS" => toks[0],
                "ENDATA" => {
                    ended = true;
                    "END"
                }
                other => return Err(parse_err(ln, &format!("unsupported section `{other}`"))),
            };
            continue;
        }
        match section {
            "ROWS" => {
                let [t, name] = toks[..] else {
                    return Err(parse_err(ln, "expected `TYPE NAME`"));
                };
                let sense = match t {
                    "N" => {
                        if obj_name.is_some() {
                            return Err(parse_err(ln, "second objective row"));
                        }
                        obj_name = Some(name.to_string());
                        continue;
                    }
                    "L" => Sense::Le,
                    "G" => Sense::Ge,
                    "E" => Sense::Eq,
                    _ => return Err(parse_err(ln, "bad row type")),
                };
                if row_index
                    .insert(name.to_string(), model.rows.len())
                    .is_some()
                {
                    return Err(parse_err(ln, "duplicate row"));
                }
                model.add_row(name.to_string(), Vec::new(), sense, 0.0);
            }
            "COLUMNS" => {
                if toks.len() == 3 && toks[1] == "'MARKER'" {
                    in_int = match toks[2] {
                        "'INTORG'" => true,
                        "'INTEND'" => false,
                        _ => return Err(parse_err(ln, "bad marker")),
                    };
                    continue;
                }
                if toks.len() != 3 && toks.len() != 5 {
                    return Err(parse_err(ln, "expected `COL ROW VALUE [ROW VALUE]`"));
                }
                let col = toks[0];
                let j = match var_index.get(col) {
                    Some(&j) => j,
                    None => {
                        let kind = if in_int {
                            VarKind::Binary
                        } else {
                            VarKind::Continuous
                        };
                        let j = model.add_var(col.to_string(), kind, 0.0, f64::INFINITY, 0.0);
                        var_index.insert(col.to_string(), j);
                        j
                    }
                };
                for pair in toks[1..].chunks(2) {
                    let value = parse_num(pair[1], ln)?;
                    if Some(pair[0]) == obj_name.as_deref() {
                        model.vars[j].obj = value;
                    } else {
                        let &i = row_index
                            .get(pair[0])
                            .ok_or_else(|| parse_err(ln, "unknown row"))?;
                        model.rows[i].coeffs.push((j, value));
                    }
                }
            }
            "RHS" => {
                if toks.len() != 3 && toks.len() != 5 {
                    return Err(parse_err(ln, "expected `SET ROW VALUE [ROW VALUE]`"));
                }
                for pair in toks[1..].chunks(2) {
                    let value = parse_num(pair[1], ln)?;
                    if Some(pair[0]) == obj_name.as_deref() {
                        return Err(parse_err(ln, "objective constant not supported"));
                    }
                    let &i = row_index
                        .get(pair[0])
                        .ok_or_else(|| parse_err(ln, "unknown row"))?;
                    model.rows[i].rhs = value;
                }
            }
            "BOUNDS" => {
                if toks.len() < 3 {
                    return Err(parse_err(ln, "expected `TYPE SET COL [VALUE]`"));
                }
                let &j = var_index
                    .get(toks[2])
                    .ok_or_else(|| parse_err(ln, "unknown column"))?;
                let value = match toks.get(3) {
                    Some(t) => parse_num(t, ln)?,
                    None => f64::NAN,
                };
                let v = &mut model.vars[j];
                match (toks[0], value.is_nan()) {
                    ("LO", false) => v.lo = value,
                    ("UP", false) => v.hi = value,
                    ("FX", false) => (v.lo, v.hi) = (value, value),
                    ("FR", true) => (v.lo, v.hi) = (f64::NEG_INFINITY, f64::INFINITY),
                    ("MI", true) => v.lo = f64::NEG_INFINITY,
                    ("PL", true) => v.hi = f64::INFINITY,
                    ("BV", true) => (v.lo, v.hi) = (0.0, 1.0),
                    _ => return Err(parse_err(ln, "unsupported bound")),
                }
            }
            _ => return Err(parse_err(ln, "data outside a section")),
        }
    }
    if !ended {
        return Err(MilpError::Parse("missing ENDATA".to_string()));
    }
    model.validate()?;
    Ok(model)
}

/// Reads the CPLEX-LP subset [`write_lp`] produces: one `obj:` objective, named rows,
/// `lo <= x <= hi` / `x = v` / `x free` bounds, and `Generals` (bounds inside `[0, 1]`).
pub fn read_lp(text: &str) -> Result<Model, MilpError> {
    // Tokens of all non-comment lines, with their line numbers.
    let mut toks: Vec<(usize, String)> = Vec::new();
    for (ln0, line) in text.lines().enumerate() {
        let line = line.split('\\').next().unwrap_or("");
        for t in line.split_whitespace() {
            toks.push((ln0 + 1, t.to_string()));
        }
    }
    let mut model = Model::new("");
    let mut var_index: HashMap<String, usize> = HashMap::new();
    let mut var_of = |model: &mut Model, name: &str| -> usize {
        *var_index.entry(name.to_string()).or_insert_with(|| {
            model.add_var(
                name.to_string(),
                VarKind::Continuous,
                0.0,
                f64::INFINITY,
                0.0,
            )
        })
    };
    let mut pos = 0;
    let expect = |pos: usize, what: &str, toks: &[(usize, String)]| -> Result<(), MilpError> {
        match toks.get(pos) {
            Some((_, t)) if t.eq_ignore_ascii_case(what) => Ok(()),
            Some((ln, t)) => Err(parse_err(*ln, &format!("expected `{what}`, got `{t}`"))),
            None => Err(MilpError::Parse(format!(
                "expected `{what}`, got end of file"
            ))),
        }
    };
    expect(pos, "Minimize", &toks)?;
    pos += 1;
    expect(pos, "obj:", &toks)?;
    pos += 1;
    let is_section = |t: &str| {
        ["subject", "bounds", "generals", "end"]
            .iter()
            .any(|s| t.eq_ignore_ascii_case(s))
    };
    // Parses `± coef name ...` until a comparator or a section keyword.
    let parse_terms = |pos: &mut usize,
                       model: &mut Model,
                       var_of: &mut dyn FnMut(&mut Model, &str) -> usize|
     -> Result<Vec<(usize, f64)>, MilpError> {
        let mut terms = Vec::new();
        while let Some((ln, t)) = toks.get(*pos) {
            if is_section(t) || ["<=", ">=", "="].contains(&t.as_str()) || t.ends_with(':') {
                break;
            }
            let sign = match t.as_str() {
                "+" => 1.0,
                "-" => -1.0,
                _ => return Err(parse_err(*ln, &format!("expected a sign, got `{t}`"))),
            };
            let (Some((ln, c)), Some((_, name))) = (toks.get(*pos + 1), toks.get(*pos + 2)) else {
                return Err(parse_err(*ln, "truncated term"));
            };
            let c = parse_num(c, *ln)?;
            let j = var_of(model, name);
            terms.push((j, sign * c));
            *pos += 3;
        }
        Ok(terms)
    };
    for (j, c) in parse_terms(&mut pos, &mut model, &mut var_of)? {
        model.vars[j].obj = c;
    }
    expect(pos, "Subject", &toks)?;
    expect(pos + 1, "To", &toks)?;
    pos += 2;
    while let Some((ln, t)) = toks.get(pos) {
        if is_section(t) {
            break;
        }
        let Some(name) = t.strip_suffix(':') else {
            return Err(parse_err(*ln, "expected a row name"));
        };
        let name = name.to_string();
        pos += 1;
        let mut coeffs = parse_terms(&mut pos, &mut model, &mut var_of)?;
        coeffs.retain(|&(_, c)| c != 0.0);
        let (Some((ln, op)), Some((_, rhs))) = (toks.get(pos), toks.get(pos + 1)) else {
            return Err(MilpError::Parse("truncated row".to_string()));
        };
        let sense = match op.as_str() {
            "<=" => Sense::Le,
            ">=" => Sense::Ge,
            "=" => Sense::Eq,
            _ => return Err(parse_err(*ln, "expected a comparator")),
        };
        let rhs = parse_num(rhs, *ln)?;
        model.add_row(name, coeffs, sense, rhs);
        pos += 2;
    }
    expect(pos, "Bounds", &toks)?;
    pos += 1;
    while let Some((ln, t)) = toks.get(pos) {
        if is_section(t) {
            break;
        }
        let ln = *ln;
        let get = |k: usize| toks.get(pos + k).map(|(_, s)| s.as_str()).unwrap_or("");
        if get(1) == "free" {
            let j = var_of(&mut model, t);
            (model.vars[j].lo, model.vars[j].hi) = (f64::NEG_INFINITY, f64::INFINITY);
            pos += 2;
        } else if get(1) == "=" {
            let v = parse_num(get(2), ln)?;
            let j = var_of(&mut model, t);
            (model.vars[j].lo, model.vars[j].hi) = (v, v);
            pos += 3;
        } else if get(1) == "<=" && get(3) == "<=" {
            let lo = parse_num(t, ln)?;
            let hi = parse_num(get(4), ln)?;
            let j = var_of(&mut model, get(2));
            (model.vars[j].lo, model.vars[j].hi) = (lo, hi);
            pos += 5;
        } else {
            return Err(parse_err(ln, "unsupported bound"));
        }
    }
    if toks
        .get(pos)
        .is_some_and(|(_, t)| t.eq_ignore_ascii_case("generals"))
    {
        pos += 1;
        while let Some((_, t)) = toks.get(pos) {
            if is_section(t) {
                break;
            }
            let j = var_of(&mut model, t);
            model.vars[j].kind = VarKind::Binary;
            pos += 1;
        }
    }
    expect(pos, "End", &toks)?;
    if pos + 1 != toks.len() {
        return Err(MilpError::Parse("text after End".to_string()));
    }
    model.validate()?;
    Ok(model)
}

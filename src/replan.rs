//! How a running `flowrun up` plans its topology again: `reload` reads
//! the file anew, `flowrun scale` re-plans the text it runs with new
//! counts. Both compile, lint the scaled topology and plan it here, and
//! hand the runner a [`Plan`] or the errors, one line each: the runner
//! itself never compiles or renders a file.

use crate::exec::core::{Reload, Scale as ScaleFn};
use crate::exec::Replan;
use crate::plan::{Plan, Scale};
use std::path::PathBuf;

/// What reload and `flowrun scale` share: the topology file, the text
/// the running plan was compiled from, the counts of `--scale`, and the
/// live counts (`--scale`, then each `flowrun scale`). A reload applies
/// the file with `--scale` again (docs/control.md).
struct Source {
    file: PathBuf,
    text: String,
    scale: Scale,
    live: Scale,
}

/// Compile `text` (of `file`) with `scale` applied, lint the scaled
/// topology, and plan it; or the errors, one line each.
fn compile_scaled(
    file: &std::path::Path,
    text: String,
    scale: &Scale,
) -> Result<Plan, Vec<String>> {
    use crate::diagnostic::Severity;
    let src = crate::source::SourceFile::new(file.display().to_string(), text);
    let compiled = crate::compile(src, None);
    let errors = |diags: &[crate::diagnostic::Diagnostic]| -> Vec<String> {
        diags
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .map(|d| crate::render::short_line(&compiled.source, d))
            .collect()
    };
    let Some(model) = compiled.model.as_ref().filter(|_| !compiled.has_errors()) else {
        return Err(errors(&compiled.diagnostics));
    };
    if !scale.is_empty() {
        let found = errors(&crate::scaled_findings(&compiled.source, scale));
        if !found.is_empty() {
            return Err(found);
        }
    }
    Ok(crate::plan::build(model, scale))
}

/// The runner's reload (read, compile, lint with the live counts and plan
/// the topology file again) and its `flowrun scale` (`text`, which the
/// running plan was compiled from, with new counts, linted the same way).
pub fn for_file(file: PathBuf, text: String, scale: Scale) -> Replan {
    let live = scale.clone();
    let shared = std::rc::Rc::new(std::cell::RefCell::new(Source {
        file,
        text,
        scale,
        live,
    }));
    let for_reload = shared.clone();
    let reload: Reload = Box::new(move || {
        let mut src = for_reload.borrow_mut();
        let text = std::fs::read_to_string(&src.file)
            .map_err(|e| vec![format!("{}: {e}", src.file.display())])?;
        let plan = compile_scaled(&src.file, text.clone(), &src.scale)?;
        src.text = text;
        src.live = src.scale.clone();
        Ok(plan)
    });
    let rescale: ScaleFn = Box::new(move |current: &Plan, asked: &[(String, u32)]| {
        let mut src = shared.borrow_mut();
        let text = src.text.clone();
        let mut counts = src.live.clone();
        for (group, n) in asked {
            counts.insert(group.clone(), *n);
        }
        let mut plan = compile_scaled(&src.file, text, &counts)?;
        plan.containment = current.containment;
        src.live = counts;
        Ok(plan)
    });
    Replan {
        reload,
        scale: rescale,
    }
}

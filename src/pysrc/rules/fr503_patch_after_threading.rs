//! FR503 patch-after-threading: gevent patches `threading` after the
//! process imported it (directly, or through `logging`,
//! `concurrent.futures` or a local module that does). Latent until a thread
//! started before the patch ends after it: `KeyError` in
//! `threading._delete` (and `_shutdown` at exit).

use crate::diagnostic::Diagnostic;
use crate::pysrc::program::{At, Ctx};
use crate::pysrc::syntax::Event;

/// Standard modules whose import imports (or starts) `threading`.
fn threading_module(name: &str) -> bool {
    let under = |root: &str| name == root || name.starts_with(&format!("{root}."));
    under("threading") || under("_thread") || under("logging") || under("concurrent.futures")
}

pub fn check(cx: &Ctx, out: &mut [Vec<Diagnostic>]) {
    let Some(patch) = &cx.patch else { return };
    let Some(at) = patch.at else { return };
    if !patch.thread {
        return;
    }
    let mut first = None;
    let mut started = None;
    for s in &cx.master[..patch.step] {
        match s.event {
            Event::Import(i) if first.is_none() => {
                let imp = &cx.files[s.file].module.imports[i];
                let names: Vec<String> = if imp.from {
                    if imp.level > 0 {
                        continue;
                    }
                    std::iter::once(imp.module.clone())
                        .chain(imp.names.iter().map(|(n, _)| format!("{}.{n}", imp.module)))
                        .collect()
                } else {
                    imp.names.iter().map(|(n, _)| n.clone()).collect()
                };
                if let Some(n) = names.iter().find(|n| threading_module(n)) {
                    first = Some((s.file, imp.span, n.clone()));
                }
            }
            Event::Call(c) if first.is_some() && started.is_none() => {
                let call = cx.call(s.file, c);
                if matches!(call.method(), "start" | "submit" | "map") {
                    started = Some(At {
                        file: s.file,
                        span: call.span,
                    });
                }
            }
            _ => {}
        }
    }
    let Some((file, span, module)) = first else {
        return;
    };
    let where_ = if file == at.file {
        String::new()
    } else {
        format!(" in {}", cx.files[file].source.name)
    };
    let mut d = Diagnostic::new(
        "FR503",
        format!(
            "gevent patches threading after `{module}` was imported{where_}: a thread started before the patch ends with KeyError in threading._delete"
        ),
        cx.label(at.file, at, "patches threading too late"),
    )
    .with_related(cx.label(at.file, At { file, span }, format!("`{module}` imports threading here")));
    if let Some(s) = started {
        d = d.with_related(cx.label(at.file, s, "a thread may start here, before the patch"));
    }
    out[at.file].push(d.with_help(
        "patch first: make `from gevent import monkey; monkey.patch_all()` the first statement of the entry module, before any other import",
    ));
}

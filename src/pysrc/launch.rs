//! Which Python program a group's command starts (pure; no IO).
//!
//! Recognised: `python[3[.N]] [options] file.py` and `python -m pkg.mod`
//! (after `exec`, `env NAME=value …`, and in a shell script — `sh -c '…'`
//! in a `run`, or an `sh` setting — after the `cd DIR &&` / `cd DIR;` that
//! precede it, whose directory the program is then looked up in), `gunicorn … module:app`,
//! `celery -A app worker`, `uwsgi --module/--wsgi-file`, and a command word
//! that is a path (`./worker`, `bin/crawl.py`): the loader reads its first
//! line and keeps it only with a Python shebang. The worker model comes
//! along: `gunicorn -k gevent`, `celery … -P gevent`, `uwsgi --gevent N`
//! monkey-patch the process before the application is imported.

/// What to read first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Entry {
    /// `python file.py`: a path relative to the working directory.
    Script(String),
    /// `python -m a.b`, or an application module (`gunicorn a.b:app`).
    Module { name: String, main: bool },
    /// A command word that is a path: Python only if its shebang says so.
    Executable(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Launch {
    pub entry: Entry,
    /// The launcher when it patches with gevent before importing the
    /// application: `gunicorn -k gevent`, `celery -P gevent`, `uwsgi --gevent`.
    pub gevent_worker: Option<String>,
    /// How the command makes Python's stdout/stderr unbuffered, if it
    /// does: `python -u`, or `PYTHONUNBUFFERED=…` before the command.
    pub unbuffered: Option<String>,
    /// The directory a shell script changes to before it starts Python
    /// (`cd app && python3 main.py`), relative to the group's working
    /// directory (or absolute).
    pub cd: Option<String>,
}

/// What a command says about Python.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Found {
    /// Not a Python launcher this module knows.
    NotPython,
    Python(Launch),
    /// A Python launcher whose program cannot be told from the words
    /// (`python -c …`, a placeholder in the module name): the reason.
    Unknown(String),
}

fn is_python(word: &str) -> bool {
    let base = crate::check::shell::basename(word);
    let Some(rest) = base.strip_prefix("python") else {
        return false;
    };
    rest.is_empty()
        || rest.strip_prefix('3').is_some_and(|v| {
            v.is_empty() || (v.starts_with('.') && v[1..].chars().all(|c| c.is_ascii_digit()))
        })
}

fn has_placeholder(s: &str) -> bool {
    s.contains('{') || s.contains('$')
}

/// Split `--name=value` / `-Xvalue` forms.
fn opt_value<'a>(
    args: &'a [String],
    i: &mut usize,
    long: &[&str],
    short: &[&str],
) -> Option<&'a str> {
    let a = args[*i].as_str();
    for l in long {
        if a == *l {
            *i += 1;
            return args.get(*i).map(String::as_str);
        }
        if let Some(v) = a.strip_prefix(l).and_then(|r| r.strip_prefix('=')) {
            return Some(v);
        }
    }
    for s in short {
        if a == *s {
            *i += 1;
            return args.get(*i).map(String::as_str);
        }
        if let Some(v) = a.strip_prefix(s) {
            if !v.is_empty() && !a.starts_with("--") {
                return Some(v.trim_start_matches('='));
            }
        }
    }
    None
}

fn module_of_app(app: &str) -> Option<String> {
    let module = app.split(':').next().unwrap_or(app);
    let ok = !module.is_empty()
        && module
            .split('.')
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_alphanumeric() || c == '_'));
    ok.then(|| module.to_string())
}

/// Read a command's words (placeholders still in them).
pub fn find(words: &[String]) -> Found {
    let mut i = 0;
    let mut unbuffered = None;
    // Wrappers that run the next word.
    while i < words.len() {
        match crate::check::shell::basename(&words[i]) {
            "exec" | "nice" | "nohup" => i += 1,
            "env" => {
                i += 1;
                while i < words.len() && (words[i].contains('=') || words[i].starts_with('-')) {
                    if unbuffered_env(&words[i]) {
                        unbuffered = Some(format!("`{}`", words[i]));
                    }
                    i += 1;
                }
            }
            w if w.contains('=') && !w.starts_with('-') => {
                if unbuffered_env(w) {
                    unbuffered = Some(format!("`{w}`"));
                }
                i += 1;
            }
            _ => break,
        }
    }
    let Some(cmd) = words.get(i) else {
        return Found::NotPython;
    };
    let args = &words[i + 1..];
    let base = crate::check::shell::basename(cmd);
    if matches!(base, "sh" | "bash" | "dash" | "zsh" | "ksh") {
        // `sh -c SCRIPT` (or `-ec`, `-xc`…): the script's program.
        let flags = args
            .iter()
            .take_while(|a| a.starts_with('-') && a.len() > 1);
        let n = flags.clone().count();
        if flags
            .clone()
            .any(|a| !a.starts_with("--") && a.contains('c'))
        {
            if let Some(script) = args.get(n) {
                return find_in_script(script);
            }
        }
        return Found::NotPython;
    }
    if is_python(cmd) {
        return match python(args) {
            Found::Python(mut l) => {
                if l.unbuffered.is_none() {
                    l.unbuffered = unbuffered;
                }
                Found::Python(l)
            }
            other => other,
        };
    }
    match base {
        "gunicorn" => gunicorn(args),
        "celery" => celery(args),
        "uwsgi" => uwsgi(args),
        _ if cmd.contains('/') || cmd.ends_with(".py") => {
            if has_placeholder(cmd) {
                Found::NotPython
            } else {
                Found::Python(Launch {
                    entry: Entry::Executable(cmd.clone()),
                    gevent_worker: None,
                    unbuffered: None,
                    cd: None,
                })
            }
        }
        _ => Found::NotPython,
    }
}

/// The program a shell script starts: its first simple command that is
/// not `cd`, `set`, `export`, `source`/`.`, an assignment, or the fallback
/// after `||` (`cd app || exit 1`), looked up in the directory the `cd`s
/// before it change to.
pub fn find_in_script(script: &str) -> Found {
    use crate::check::shell::{self, Op};
    let text = shell::Text::plain(script, crate::source::Span::default());
    let lexed = shell::lex(&text);
    let mut cd = std::path::PathBuf::new();
    let mut after_or = false;
    for cmd in shell::simple_commands(&lexed.toks) {
        let skip = after_or;
        after_or = matches!(cmd.end, Some((Op::Or, _)));
        if skip {
            continue;
        }
        let words: Vec<String> = cmd
            .command_words()
            .filter_map(|t| t.word().map(str::to_string))
            .collect();
        match words.first().map(String::as_str) {
            None | Some("set" | "export" | "source" | ".") => continue,
            Some("cd") => {
                let dir = words.iter().skip(1).find(|w| !w.starts_with('-'));
                match dir {
                    Some(d) if !has_placeholder(d) && !d.starts_with('~') => cd.push(d),
                    Some(d) => {
                        return Found::Unknown(format!("the script changes directory to `{d}`"))
                    }
                    None => {
                        return Found::Unknown(
                            "the script changes to the home directory (`cd` alone)".into(),
                        )
                    }
                }
                if matches!(cmd.end, Some((Op::Amp | Op::Pipe, _))) {
                    // `cd x &` / `cd x |`: in a subshell, no effect here.
                    cd.pop();
                }
            }
            Some(_) => {
                return match find(&words) {
                    Found::Python(mut l) if !cd.as_os_str().is_empty() => {
                        l.cd = Some(cd.display().to_string());
                        Found::Python(l)
                    }
                    other => other,
                };
            }
        }
    }
    Found::NotPython
}

/// `PYTHONUNBUFFERED=x` with a non-empty value (Python then acts as `-u`).
fn unbuffered_env(word: &str) -> bool {
    word.strip_prefix("PYTHONUNBUFFERED=")
        .is_some_and(|v| !v.is_empty())
}

fn python(args: &[String]) -> Found {
    let mut i = 0;
    let mut unbuffered = None;
    while i < args.len() {
        let a = args[i].as_str();
        // `-u`, or a cluster of short flags with `u` in it (`-uB`, `-um`).
        if a.starts_with('-')
            && !a.starts_with("--")
            && a.len() > 1
            && !matches!(a.as_bytes()[1], b'X' | b'W' | b'c' | b'm')
            && a[1..].chars().all(|c| c.is_ascii_alphabetic())
            && a[1..]
                .split(['c', 'm'])
                .next()
                .is_some_and(|f| f.contains('u'))
        {
            unbuffered = Some(format!("`python {a}`"));
        }
        if a == "-m"
            || (a.starts_with('-')
                && !a.starts_with("--")
                && a.len() > 2
                && a.ends_with('m')
                && a[1..].chars().all(|c| c.is_ascii_alphabetic()))
        {
            let Some(m) = args.get(i + 1) else {
                return Found::Unknown("`-m` without a module".into());
            };
            if has_placeholder(m) {
                return Found::Unknown(format!("the module `{m}` has a placeholder"));
            }
            return Found::Python(Launch {
                entry: Entry::Module {
                    name: m.clone(),
                    main: true,
                },
                gevent_worker: None,
                unbuffered: unbuffered.clone(),
                cd: None,
            });
        }
        if let Some(m) = a.strip_prefix("-m") {
            return Found::Python(Launch {
                entry: Entry::Module {
                    name: m.to_string(),
                    main: true,
                },
                gevent_worker: None,
                unbuffered: unbuffered.clone(),
                cd: None,
            });
        }
        if a == "-c"
            || (a.starts_with('-')
                && !a.starts_with("--")
                && !a.starts_with("-X")
                && !a.starts_with("-W")
                && a[1..].chars().all(|c| c.is_ascii_alphabetic())
                && a.contains('c'))
        {
            return Found::Unknown("the program is given with `-c`".into());
        }
        match a {
            "-X" | "-W" | "--check-hash-based-pycs" => i += 2,
            "-" => return Found::Unknown("the program is read from standard input".into()),
            _ if a.starts_with('-') => i += 1,
            _ => {
                if has_placeholder(a) {
                    return Found::Unknown(format!("the script `{a}` has a placeholder"));
                }
                return Found::Python(Launch {
                    entry: Entry::Script(a.to_string()),
                    gevent_worker: None,
                    unbuffered: unbuffered.clone(),
                    cd: None,
                });
            }
        }
    }
    Found::Unknown("an interactive interpreter (no script or `-m`)".into())
}

/// gunicorn options that take no value (every other option takes one).
const GUNICORN_FLAGS: &[&str] = &[
    "--reload",
    "-D",
    "--daemon",
    "--preload",
    "--check-config",
    "--print-config",
    "--spew",
    "--capture-output",
    "--enable-stdio-inheritance",
    "--reuse-port",
    "-R",
    "--no-sendfile",
    "--strip-header-spaces",
    "--help",
    "-h",
    "--version",
    "-v",
    "--proxy-protocol",
    "--suppress-ragged-eofs",
    "--do-handshake-on-connect",
    "--print-config",
];

fn gunicorn(args: &[String]) -> Found {
    let mut app = None;
    let mut worker = None;
    let mut i = 0;
    while i < args.len() {
        if let Some(k) = opt_value(args, &mut i, &["--worker-class"], &["-k"]) {
            worker = Some(k.to_string());
        } else if args[i].starts_with('-') {
            if !GUNICORN_FLAGS.contains(&args[i].as_str()) && !args[i].contains('=') {
                i += 1;
            }
        } else if app.is_none() {
            app = Some(args[i].clone());
        }
        i += 1;
    }
    let gevent = worker.filter(|w| w == "gevent" || w.to_ascii_lowercase().contains("ggevent"));
    app_launch("gunicorn", app, gevent.map(|w| format!("gunicorn -k {w}")))
}

fn app_launch(tool: &str, app: Option<String>, gevent_worker: Option<String>) -> Found {
    let Some(app) = app else {
        return Found::Unknown(format!("no application module in the `{tool}` command"));
    };
    if has_placeholder(&app) {
        return Found::Unknown(format!("the application `{app}` has a placeholder"));
    }
    match module_of_app(&app) {
        Some(name) => Found::Python(Launch {
            entry: Entry::Module { name, main: false },
            gevent_worker,
            unbuffered: None,
            cd: None,
        }),
        None => Found::Unknown(format!("`{app}` is not a module name")),
    }
}

fn celery(args: &[String]) -> Found {
    let mut app = None;
    let mut pool = None;
    let mut worker = false;
    let mut i = 0;
    while i < args.len() {
        if let Some(a) = opt_value(args, &mut i, &["--app"], &["-A"]) {
            app = Some(a.to_string());
        } else if let Some(p) = opt_value(args, &mut i, &["--pool"], &["-P"]) {
            pool = Some(p.to_string());
        } else if args[i] == "worker" {
            worker = true;
        }
        i += 1;
    }
    let gevent = (worker && pool.as_deref() == Some("gevent"))
        .then(|| "celery worker -P gevent".to_string());
    app_launch("celery", app, gevent)
}

fn uwsgi(args: &[String]) -> Found {
    let mut app = None;
    let mut file = None;
    let mut gevent = false;
    let mut i = 0;
    while i < args.len() {
        if let Some(m) = opt_value(args, &mut i, &["--module", "--wsgi"], &["-w"]) {
            app = Some(m.to_string());
        } else if let Some(f) = opt_value(args, &mut i, &["--wsgi-file", "--file"], &[]) {
            file = Some(f.to_string());
        } else if opt_value(args, &mut i, &["--gevent"], &[]).is_some() {
            gevent = true;
        }
        i += 1;
    }
    let worker = gevent.then(|| "uwsgi --gevent".to_string());
    if let Some(f) = file {
        if has_placeholder(&f) {
            return Found::Unknown(format!("the file `{f}` has a placeholder"));
        }
        return Found::Python(Launch {
            entry: Entry::Script(f),
            gevent_worker: worker,
            unbuffered: None,
            cd: None,
        });
    }
    app_launch("uwsgi", app, worker)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(s: &str) -> Found {
        find(&shell_words::split(s).unwrap())
    }

    fn script(s: &str) -> Found {
        Found::Python(Launch {
            entry: Entry::Script(s.into()),
            gevent_worker: None,
            unbuffered: None,
            cd: None,
        })
    }

    fn module(s: &str, main: bool, w: Option<&str>) -> Found {
        Found::Python(Launch {
            entry: Entry::Module {
                name: s.into(),
                main,
            },
            gevent_worker: w.map(str::to_string),
            unbuffered: None,
            cd: None,
        })
    }

    #[test]
    fn python_forms() {
        assert_eq!(f("python3 pool.py"), script("pool.py"));
        let unbuffered = |found: Found, how: &str| match found {
            Found::Python(mut l) => {
                l.unbuffered = Some(how.to_string());
                Found::Python(l)
            }
            other => other,
        };
        assert_eq!(
            f("exec python3.11 -u -X dev w.py --x 1"),
            unbuffered(script("w.py"), "`python -u`")
        );
        assert_eq!(
            f("env A=1 python -m crawler --shard 1"),
            module("crawler", true, None)
        );
        assert_eq!(
            f("python -um app.main"),
            unbuffered(module("app.main", true, None), "`python -um`")
        );
        assert!(matches!(f("python -c 'print(1)'"), Found::Unknown(_)));
        assert!(matches!(f("python -m {mod}"), Found::Unknown(_)));
        assert_eq!(f("redis-server --port 1"), Found::NotPython);
        assert_eq!(f("pythonista x.py"), Found::NotPython);
        assert!(matches!(
            f("./bin/worker"),
            Found::Python(Launch {
                entry: Entry::Executable(_),
                ..
            })
        ));
    }

    #[test]
    fn shell_scripts_follow_cd() {
        let cd = |s: &str| match f(s) {
            Found::Python(l) => (l.entry, l.cd),
            other => panic!("{s}: {other:?}"),
        };
        let w = Entry::Script("x.py".into());
        assert_eq!(
            cd("sh -c 'cd app && python3 x.py'"),
            (w.clone(), Some("app".into()))
        );
        assert_eq!(
            cd("bash -ec 'cd app; cd src || exit 1; exec python3 x.py'"),
            (w.clone(), Some("app/src".into()))
        );
        assert_eq!(cd("sh -c 'python3 x.py'"), (w.clone(), None));
        assert_eq!(
            cd("sh -c 'cd /srv/app && python3 x.py'"),
            (w, Some("/srv/app".into()))
        );
        assert_eq!(
            find_in_script("cd app\nexport A=1\npython3 -m svc.main"),
            Found::Python(Launch {
                entry: Entry::Module {
                    name: "svc.main".into(),
                    main: true
                },
                gevent_worker: None,
                unbuffered: None,
                cd: Some("app".into()),
            })
        );
        assert!(matches!(
            f("sh -c 'cd $APP && python3 x.py'"),
            Found::Unknown(_)
        ));
        assert!(matches!(f("sh -c 'cd && python3 x.py'"), Found::Unknown(_)));
        assert_eq!(f("sh -c 'cd app && redis-server'"), Found::NotPython);
        assert_eq!(f("sh script.sh"), Found::NotPython);
    }

    #[test]
    fn unbuffered_python() {
        let u = |s: &str| match f(s) {
            Found::Python(l) => l.unbuffered,
            other => panic!("{other:?}"),
        };
        assert_eq!(u("python3 -u w.py").as_deref(), Some("`python -u`"));
        assert_eq!(u("python3 -Bu w.py").as_deref(), Some("`python -Bu`"));
        assert_eq!(u("python -um app.main").as_deref(), Some("`python -um`"));
        assert_eq!(
            u("env PYTHONUNBUFFERED=1 python3 w.py").as_deref(),
            Some("`PYTHONUNBUFFERED=1`")
        );
        assert_eq!(u("PYTHONUNBUFFERED= python3 w.py"), None);
        assert_eq!(u("python3 -B w.py -u"), None);
        assert_eq!(u("python3 -X utf8 w.py"), None);
    }

    #[test]
    fn app_servers() {
        assert_eq!(
            f("gunicorn app:wsgi -k gevent --bind 127.0.0.1:{port}"),
            module("app", false, Some("gunicorn -k gevent"))
        );
        assert_eq!(
            f("gunicorn --worker-class=gevent -w 4 shop.wsgi:application"),
            module("shop.wsgi", false, Some("gunicorn -k gevent"))
        );
        assert_eq!(
            f("gunicorn shop.wsgi --workers 4 --graceful-timeout 25"),
            module("shop.wsgi", false, None)
        );
        assert_eq!(
            f("celery -A app worker --pool gevent --concurrency 5"),
            module("app", false, Some("celery worker -P gevent"))
        );
        assert_eq!(
            f("celery -A tasks worker --pool prefork"),
            module("tasks", false, None)
        );
        assert_eq!(
            f("uwsgi --http :8000 --gevent 100 --module site.app:application"),
            module("site.app", false, Some("uwsgi --gevent"))
        );
    }
}

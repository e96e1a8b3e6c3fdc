//! `--format github`: GitHub Actions workflow commands, one per finding:
//! `::error file=F,line=L,col=C,endLine=L2,endColumn=C2,title=FR302 double-delivery::message`
//! (`::warning` for warnings). The help line follows the message on a
//! second annotation line. Escaping follows GitHub's workflow-command
//! rules: in the message `%`, `\r`, `\n` become `%25`, `%0D`, `%0A`; in
//! property values `:` and `,` are escaped too (`%3A`, `%2C`).

use super::LineIndex;
use crate::diagnostic::Severity;
use crate::Compiled;

fn escape_data(s: &str) -> String {
    s.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

fn escape_property(s: &str) -> String {
    escape_data(s).replace(':', "%3A").replace(',', "%2C")
}

/// Every finding of every file as a workflow command line.
pub fn github(files: &[Compiled]) -> String {
    let mut out = String::new();
    for c in files {
        let lines = LineIndex::new(&c.source);
        for d in &c.diagnostics {
            let r = lines.region(d.primary.span);
            let kind = match d.severity {
                Severity::Error => "error",
                Severity::Warning => "warning",
                Severity::Note => "notice",
            };
            let mut message = d.message.clone();
            if let Some(h) = &d.help {
                message.push_str("\nhelp: ");
                message.push_str(h);
            }
            out.push_str(&format!(
                "::{kind} file={},line={},col={},endLine={},endColumn={},title={}::{}\n",
                escape_property(&c.source.name),
                r.line,
                r.column,
                r.end_line,
                r.end_column,
                escape_property(&format!("{} {}", d.code, d.rule().name)),
                escape_data(&message),
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_follows_workflow_command_rules() {
        assert_eq!(escape_data("50%\r\nok: a,b"), "50%25%0D%0Aok: a,b");
        assert_eq!(escape_property("a:b,c%"), "a%3Ab%2Cc%25");
    }
}

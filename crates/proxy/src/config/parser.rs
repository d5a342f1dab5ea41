//! The parser: reads lines, tracks the section, hands each keyword to its section's table
//! ([`super::keywords`]), and checks the whole at the end.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::keywords;
use super::lexer::{need, no_more, words, Res};
use super::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Section {
    None,
    Global,
    Defaults,
    Frontend(usize),
    Stats(usize),
    Backend(usize),
}

/// A frontend being read: it becomes a stats frontend or an HTTP/3 one at the end.
#[derive(Debug, Clone)]
pub(super) struct FrontendDraft {
    pub(super) line: usize,
    pub(super) front: Frontend,
    pub(super) tcp_bind: Option<(SocketAddr, usize)>,
    pub(super) metrics_path: Option<(String, usize)>,
    pub(super) stats_path: Option<(String, usize)>,
}

pub(super) struct Parser {
    pub(super) file: PathBuf,
    pub(super) line: usize,
    pub(super) section: Section,
    pub(super) defaults_timeouts: Timeouts,
    pub(super) defaults_forwardfor: bool,
    pub(super) defaults_json_log: bool,
    pub(super) defaults_maxconn: Option<usize>,
    pub(super) defaults_backend: BackendSettings,
    pub(super) global: Global,
    pub(super) fronts: Vec<FrontendDraft>,
    pub(super) backends: Vec<(Backend, usize)>,
    /// (line, backend name) references to check at the end.
    pub(super) backend_refs: Vec<(usize, String)>,
    /// The line of `quic-lb-key`, checked against `server-id` and `nbthread` at the end.
    pub(super) lb_key_line: usize,
}

impl Parser {
    pub(super) fn new(file: &Path) -> Self {
        Parser {
            file: file.to_path_buf(),
            line: 0,
            section: Section::None,
            defaults_timeouts: Timeouts::default(),
            defaults_forwardfor: false,
            defaults_json_log: false,
            defaults_maxconn: None,
            defaults_backend: BackendSettings::default(),
            global: Global::default(),
            fronts: Vec::new(),
            backends: Vec::new(),
            backend_refs: Vec::new(),
            lb_key_line: 0,
        }
    }

    fn err_at(&self, line: usize, message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: self.file.clone(),
            line,
            message: message.into(),
        }
    }

    pub(super) fn path(&self, raw: &str) -> PathBuf {
        let p = PathBuf::from(raw);
        if p.is_absolute() {
            return p;
        }
        self.file.parent().map_or(p.clone(), |dir| dir.join(&p))
    }

    pub(super) fn run(mut self, text: &str) -> Result<Config, ConfigError> {
        for (n, raw) in text.lines().enumerate() {
            self.line = n + 1;
            let args = words(raw).map_err(|e| self.err_at(self.line, e))?;
            if args.is_empty() {
                continue;
            }
            self.line_args(&args).map_err(|e| self.err_at(self.line, e))?;
        }
        self.finish()
    }

    fn line_args(&mut self, args: &[String]) -> Res<()> {
        let kw = args[0].as_str();
        match kw {
            "global" => {
                no_more(args, 1)?;
                self.section = Section::Global;
                return Ok(());
            }
            "defaults" => {
                // `defaults [NAME]`: the name is accepted and ignored.
                no_more(args, 2)?;
                self.section = Section::Defaults;
                return Ok(());
            }
            "frontend" | "backend" => {
                let name = need(args, 1, &format!("a name after '{kw}'"))?.to_string();
                no_more(args, 2)?;
                let taken = self.fronts.iter().any(|f| f.front.name == name)
                    || self.backends.iter().any(|(b, _)| b.name == name);
                if taken {
                    return Err(format!(
                        "the name '{name}' is already used by another proxy section"
                    ));
                }
                if kw == "frontend" {
                    self.fronts.push(FrontendDraft {
                        line: self.line,
                        front: Frontend {
                            name,
                            binds: Vec::new(),
                            default_backend: None,
                            rules: Vec::new(),
                            set_response_headers: Arc::new([]),
                            timeouts: self.defaults_timeouts.clone(),
                            forwardfor: self.defaults_forwardfor,
                            json_log: self.defaults_json_log,
                            maxconn: self.defaults_maxconn,
                            quic_initial: Vec::new(),
                            early_data: EarlyDataPolicy::default(),
                        },
                        tcp_bind: None,
                        metrics_path: None,
                        stats_path: None,
                    });
                    self.section = Section::Frontend(self.fronts.len() - 1);
                } else {
                    let backend = Backend {
                        name,
                        settings: self.defaults_backend.clone(),
                        servers: Vec::new(),
                        timeouts: self.defaults_timeouts.clone(),
                        forwardfor: self.defaults_forwardfor,
                    };
                    self.backends.push((backend, self.line));
                    self.section = Section::Backend(self.backends.len() - 1);
                }
                return Ok(());
            }
            "listen" => {
                return Err("'listen' sections are not supported; use a frontend and a backend".into())
            }
            _ => {}
        }
        match self.section {
            Section::None => Err(format!(
                "'{kw}' outside a section; expected global, defaults, frontend or backend first"
            )),
            Section::Global => keywords::dispatch(self, keywords::GLOBAL, 0, args, "unknown keyword"),
            Section::Defaults => keywords::dispatch(self, keywords::DEFAULTS, 0, args, "unknown keyword"),
            Section::Frontend(_) | Section::Stats(_) => {
                keywords::dispatch(self, keywords::FRONTEND, 0, args, "unknown keyword")
            }
            Section::Backend(_) => keywords::dispatch(self, keywords::BACKEND, 0, args, "unknown keyword"),
        }
    }

    /// How errors name the current section: ` in the global section`, ` in frontend 'web'`, ...
    pub(super) fn section_name(&self) -> String {
        match self.section {
            Section::None => String::new(),
            Section::Global => " in the global section".into(),
            Section::Defaults => " in a defaults section".into(),
            Section::Frontend(i) | Section::Stats(i) => {
                format!(" in frontend '{}'", self.fronts[i].front.name)
            }
            Section::Backend(i) => format!(" in backend '{}'", self.backends[i].0.name),
        }
    }

    /// The frontend being read (only frontend keywords call this).
    pub(super) fn frontend_index(&self) -> usize {
        match self.section {
            Section::Frontend(i) | Section::Stats(i) => i,
            _ => unreachable!("a frontend keyword outside a frontend"),
        }
    }

    /// The backend being read (only backend keywords call this).
    pub(super) fn backend_mut(&mut self) -> &mut Backend {
        match self.section {
            Section::Backend(i) => &mut self.backends[i].0,
            _ => unreachable!("a backend keyword outside a backend"),
        }
    }

    /// The timeouts the current section sets.
    pub(super) fn timeouts_mut(&mut self) -> &mut Timeouts {
        match self.section {
            Section::Frontend(i) | Section::Stats(i) => &mut self.fronts[i].front.timeouts,
            Section::Backend(i) => &mut self.backends[i].0.timeouts,
            _ => &mut self.defaults_timeouts,
        }
    }

    /// The `option forwardfor` flag of the current section.
    pub(super) fn forwardfor_mut(&mut self) -> &mut bool {
        match self.section {
            Section::Frontend(i) | Section::Stats(i) => &mut self.fronts[i].front.forwardfor,
            Section::Backend(i) => &mut self.backends[i].0.forwardfor,
            _ => &mut self.defaults_forwardfor,
        }
    }

    /// `maxconn` of a frontend, or of the defaults.
    pub(super) fn maxconn_mut(&mut self) -> Res<&mut Option<usize>> {
        match self.section {
            Section::Frontend(i) | Section::Stats(i) => Ok(&mut self.fronts[i].front.maxconn),
            Section::Defaults => Ok(&mut self.defaults_maxconn),
            _ => Err("'maxconn' belongs in global, defaults or a frontend".into()),
        }
    }

    /// `option jsonlog`: a frontend's, or the defaults'.
    pub(super) fn json_log_mut(&mut self) -> Res<&mut bool> {
        match self.section {
            Section::Frontend(i) | Section::Stats(i) => Ok(&mut self.fronts[i].front.json_log),
            Section::Defaults => Ok(&mut self.defaults_json_log),
            _ => Err("'option jsonlog' belongs in a frontend or defaults".into()),
        }
    }

    /// The backend settings of the current section, for `what`, which only backends and defaults have.
    pub(super) fn settings_mut(&mut self, what: &str) -> Res<&mut BackendSettings> {
        match self.section {
            Section::Backend(i) => Ok(&mut self.backends[i].0.settings),
            Section::Defaults => Ok(&mut self.defaults_backend),
            _ => Err(format!("'{what}' belongs in a backend or defaults section")),
        }
    }

    /// `if|unless { FETCH VALUE ... }` from `args[start]`: the fetch, its values, and whether negated.
    pub(super) fn condition(args: &[String], start: usize) -> Res<(String, Vec<String>, bool)> {
        let cond = need(args, start, "'if' or 'unless'")?;
        let negate = match cond {
            "if" => false,
            "unless" => true,
            other => return Err(format!("expected 'if' or 'unless', found '{other}'")),
        };
        if need(args, start + 1, "'{' to open the condition")? != "{" {
            return Err("expected '{' after if/unless (conditions are written { fetch value ... })".into());
        }
        let close = args
            .iter()
            .rposition(|a| a == "}")
            .ok_or("expected '}' to close the condition")?;
        if close != args.len() - 1 {
            return Err(format!("unexpected '{}' after the condition", args[close + 1]));
        }
        let inner = &args[start + 2..close];
        let fetch = inner
            .first()
            .ok_or("expected a fetch inside { }, such as path_beg, hdr(host) or src")?;
        Ok((fetch.clone(), inner[1..].to_vec(), negate))
    }

    pub(super) fn acl(args: &[String], start: usize) -> Res<(Acl, bool)> {
        let (fetch, mut values, negate) = Self::condition(args, start)?;
        let acl = match fetch.as_str() {
            "path_beg" => Acl::PathBeg(values),
            "path" => Acl::Path(values),
            f if f.starts_with("hdr(") && f.ends_with(')') => {
                let name = f[4..f.len() - 1].to_ascii_lowercase();
                if name.is_empty() {
                    return Err("expected a header name in hdr(NAME)".into());
                }
                let ignore_case = values.first().is_some_and(|v| v == "-i");
                if ignore_case {
                    values.remove(0);
                }
                Acl::Hdr {
                    name,
                    values,
                    ignore_case,
                }
            }
            other => {
                return Err(format!(
                    "unknown fetch '{other}'; expected path_beg, path or hdr(NAME)"
                ))
            }
        };
        let empty = match &acl {
            Acl::PathBeg(v) | Acl::Path(v) => v.is_empty(),
            Acl::Hdr { values, .. } => values.is_empty(),
        };
        if empty {
            return Err(format!("expected at least one value after '{fetch}'"));
        }
        Ok((acl, negate))
    }

    /// The encrypted mode seals the server ID and a nonce of at least 4 bytes in one 16-byte block, and
    /// names the worker in five bits.
    fn check_lb_key(&self) -> Result<(), ConfigError> {
        let line = self.lb_key_line;
        match self.global.server_id.as_deref().map(<[u8]>::len) {
            None => Err(self.err_at(line, "quic-lb-key needs a 'server-id HEX' in global")),
            Some(n) if n > 12 => Err(self.err_at(
                line,
                format!("quic-lb-key takes a server-id of at most 12 bytes (the nonce needs 4 of the block's 16), found {n}"),
            )),
            _ => match self.global.nbthread {
                Some(n) if n > 32 => Err(self.err_at(line, format!("quic-lb-key allows at most 32 workers, found 'nbthread {n}'"))),
                _ => Ok(()),
            },
        }
    }

    fn finish(self) -> Result<Config, ConfigError> {
        let mut frontends = Vec::new();
        let mut stats = Vec::new();
        for draft in &self.fronts {
            let served = draft.metrics_path.is_some() || draft.stats_path.is_some();
            match (draft.tcp_bind, served) {
                (Some((addr, _)), true) => {
                    if !draft.front.binds.is_empty() {
                        return Err(self.err_at(draft.line, format!("frontend '{}' mixes QUIC and TCP binds", draft.front.name)));
                    }
                    stats.push(StatsFrontend {
                        name: draft.front.name.clone(),
                        addr,
                        metrics_path: draft.metrics_path.as_ref().map(|(p, _)| p.clone()),
                        stats_path: draft.stats_path.as_ref().map(|(p, _)| p.clone()),
                    });
                }
                (Some((_, line)), false) => {
                    return Err(self.err_at(
                        line,
                        "a TCP bind serves only stats: expected 'stats uri /stats' or 'http-request use-service prometheus-exporter if { path /metrics }' in this frontend, or a quic4@/quic6@ bind",
                    ))
                }
                (None, true) => {
                    let line = draft.metrics_path.iter().chain(&draft.stats_path).map(|(_, l)| *l).min().unwrap_or(draft.line);
                    return Err(self.err_at(line, "stats and prometheus-exporter need a TCP bind such as 'bind 127.0.0.1:8404'"))
                }
                (None, false) => {
                    if draft.front.binds.is_empty() {
                        return Err(self.err_at(draft.line, format!("frontend '{}' has no bind", draft.front.name)));
                    }
                    if draft.front.default_backend.is_none() && draft.front.rules.is_empty() {
                        return Err(self.err_at(draft.line, format!("frontend '{}' has neither default_backend nor use_backend", draft.front.name)));
                    }
                    frontends.push(draft.front.clone());
                }
            }
        }
        for (line, name) in &self.backend_refs {
            if !self.backends.iter().any(|(b, _)| &b.name == name) {
                return Err(self.err_at(*line, format!("no backend named '{name}'")));
            }
        }
        for (b, line) in &self.backends {
            if b.servers.is_empty() {
                return Err(self.err_at(*line, format!("backend '{}' has no server", b.name)));
            }
        }
        if self.global.quic_lb_key.is_some() {
            self.check_lb_key()?;
        }
        if frontends.is_empty() {
            return Err(self.err_at(
                0,
                "no HTTP/3 frontend: expected a frontend with 'bind quic4@ADDR:PORT ssl crt FILE'",
            ));
        }
        Ok(Config {
            global: self.global,
            frontends,
            backends: self.backends.into_iter().map(|(b, _)| b).collect(),
            stats,
        })
    }
}

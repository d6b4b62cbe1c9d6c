//! The macro that turns the table of settings in [`super`] into the
//! [`Config`](super::Config) the agent runs with, the
//! [`Builder`](super::Builder) and its setters, the resolution against the
//! environment, the bounds checks, a `Debug` that never shows a secret,
//! and the rows of the README's table. A setting is one row; nothing else
//! names it.

/// `value` as `Debug` shows it: itself, or only whether a secret is set.
macro_rules! shown {
    ($v:expr) => {
        &$v
    };
    ($v:expr, secret) => {
        &$v.as_ref().map(|_| "<redacted>")
    };
}

/// `value` as an error names it: as its variable writes it, or, for a
/// secret, not at all.
macro_rules! error_text {
    ($v:expr) => {
        $crate::config::value::Value::show(&$v)
    };
    ($v:expr, secret) => {
        String::from("<redacted>")
    };
}

/// The docs' text of a default: the one written, else the value shown.
#[cfg(test)]
macro_rules! default_text {
    ($ty:ty, $default:expr) => {
        format!(
            "`{}`",
            $crate::config::value::Value::show(&<$ty>::from($default))
        )
    };
    ($ty:ty, $default:expr, $text:literal) => {
        String::from($text)
    };
}

/// The setter's line about its default: the named constant, linked, or
/// the text written for a default that is not one value.
macro_rules! default_doc {
    ($default:expr) => {
        concat!("Default: [`", stringify!($default), "`].")
    };
    ($default:expr, $text:literal) => {
        concat!("Default: ", $text, ".")
    };
}

/// The type a setter takes: the one written, else the setting's own.
macro_rules! setter_type {
    ($ty:ty) => {
        $ty
    };
    ($ty:ty, $set:ty) => {
        $set
    };
}

macro_rules! agent_settings {
    ($(
        $(#[doc = $doc:literal])*
        $key:ident: $ty:ty, env $env:literal, default $default:expr
            $(, shown $text:literal)?
            $(, set $set:ty)?
            $(, tidy $tidy:expr)?
            $(, check $check:expr)?
            , example $example:literal
            $(, $secret:ident)?;
    )*) => {
        /// Fully resolved settings of a running agent. Only
        /// [`Builder::build`] makes one, and [`crate::Agent::start`] checks
        /// it again, so a running agent's settings are always within
        /// [`Config::check`]'s bounds.
        #[derive(Clone)]
        #[non_exhaustive]
        pub struct Config {
            $( $(#[doc = $doc])* pub $key: $ty, )*
        }

        /// Builds a [`Config`] and starts the agent. Each setter's value
        /// wins over the setting's `HEAPTIDE_*` variable, which wins over
        /// the default.
        ///
        /// ```no_run
        /// let agent = heaptide_agent::builder()
        ///     .service("checkout")
        ///     .interval(std::time::Duration::from_secs(5))
        ///     .start()
        ///     .expect("heaptide agent");
        /// # drop(agent);
        /// ```
        #[derive(Default, Clone)]
        #[must_use]
        pub struct Builder {
            $( $key: Option<$ty>, )*
        }

        impl Builder {
            $(
                $(#[doc = $doc])*
                #[doc = ""]
                #[doc = concat!("Read from `", $env, "` when not set here. ", default_doc!($default $(, $text)?))]
                pub fn $key(mut self, value: impl Into<setter_type!($ty $(, $set)?)>) -> Self {
                    self.$key = Some(<$ty>::from(value.into()));
                    self
                }
            )*

            /// Resolves the settings against `env`, for tests.
            ///
            /// # Errors
            ///
            /// [`crate::Error::InvalidConfig`], naming the variable, when a
            /// variable cannot be read or a value is out of its bounds.
            pub fn build_with(self, env: impl Fn(&str) -> Option<String>) -> Result<Config> {
                let env: &dyn Fn(&str) -> Option<String> = &env;
                let config = Config {
                    $( $key: {
                        let v = resolve::<$ty>(self.$key, env, $env)?
                            .unwrap_or_else(|| <$ty>::from($default));
                        $( let v = $tidy(v); )?
                        v
                    }, )*
                };
                config.check()?;
                Ok(config)
            }

            /// Sets one setting from text as its variable would give it:
            /// what the test of every setting uses.
            #[cfg(test)]
            fn with_text(mut self, key: &str, text: &str) -> Builder {
                use $crate::config::value::Value;
                match key {
                    $( $env => self.$key = Some(<$ty>::parse_env(text).expect($env)), )*
                    other => panic!("no setting {other}"),
                }
                self
            }
        }

        impl Config {
            /// Checks every setting against its bounds: an interval of a
            /// nanosecond would spin a core, a timeout of an hour would
            /// hold `shutdown` for one.
            ///
            /// # Errors
            ///
            /// [`crate::Error::InvalidConfig`], naming the variable of the
            /// first setting out of bounds.
            pub fn check(&self) -> Result<()> {
                $(
                    let value = || error_text!(self.$key $(, $secret)?);
                    $(
                        let check: fn(&$ty) -> std::result::Result<(), String> = $check;
                        check(&self.$key).map_err(|reason| invalid($env, value(), &reason))?;
                    )?
                    let _ = value;
                )*
                self.check_together()
            }
        }

        impl std::fmt::Debug for Config {
            /// Every setting, with secrets only said to be there.
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                let mut d = f.debug_struct("Config");
                $( d.field(stringify!($key), shown!(self.$key $(, $secret)?)); )*
                d.finish()
            }
        }

        impl std::fmt::Debug for Builder {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                let mut d = f.debug_struct("Builder");
                $( d.field(stringify!($key), shown!(self.$key $(, $secret)?)); )*
                d.finish()
            }
        }

        /// Every setting as the README's table shows it.
        #[cfg(test)]
        fn table() -> Vec<Row> {
            vec![$(
                Row {
                    env: $env,
                    default: default_text!($ty, $default $(, $text)?),
                    help: concat!($($doc, "\n"),*).lines().map(str::trim).collect::<Vec<_>>().join(" ").trim().to_owned(),
                    example: $example,
                },
            )*]
        }
    };
}

#[cfg(test)]
pub(crate) use default_text;
pub(crate) use {agent_settings, default_doc, error_text, setter_type, shown};

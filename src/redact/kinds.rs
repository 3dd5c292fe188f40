//! Entity kinds: what the detectors report ([`Detail`], counted per kind in
//! [`super::RedactStats`]) and the placeholder class each one is replaced
//! with ([`Class`], one numbering sequence per class).

/// Placeholder class: `<EMAIL_3>`, `<SECRET_1>`... Every secret kind shares
/// `SECRET`; credentials found in URLs (`user:pass@`) get `CREDENTIALS`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Class {
    Email,
    Phone,
    CreditCard,
    Iban,
    Ssn,
    IpAddress,
    MacAddress,
    Secret,
    Credentials,
    DateOfBirth,
    Address,
    Person,
    UserId,
}

impl Class {
    pub const ALL: [Class; 13] = [
        Class::Email,
        Class::Phone,
        Class::CreditCard,
        Class::Iban,
        Class::Ssn,
        Class::IpAddress,
        Class::MacAddress,
        Class::Secret,
        Class::Credentials,
        Class::DateOfBirth,
        Class::Address,
        Class::Person,
        Class::UserId,
    ];

    /// The one ASCII byte that names the class inside a pending marker.
    pub fn code(self) -> u8 {
        match self {
            Class::Email => b'E',
            Class::Phone => b'P',
            Class::CreditCard => b'C',
            Class::Iban => b'I',
            Class::Ssn => b'S',
            Class::IpAddress => b'A',
            Class::MacAddress => b'M',
            Class::Secret => b'K',
            Class::Credentials => b'U',
            Class::DateOfBirth => b'B',
            Class::Address => b'D',
            Class::Person => b'N',
            Class::UserId => b'X',
        }
    }

    pub fn from_code(c: u8) -> Option<Class> {
        Class::ALL.into_iter().find(|k| k.code() == c)
    }

    pub fn index(self) -> usize {
        self as usize
    }

    /// Upper-case tag used in placeholders.
    pub fn tag(self) -> &'static str {
        match self {
            Class::Email => "EMAIL",
            Class::Phone => "PHONE",
            Class::CreditCard => "CREDIT_CARD",
            Class::Iban => "IBAN",
            Class::Ssn => "SSN",
            Class::IpAddress => "IP_ADDRESS",
            Class::MacAddress => "MAC_ADDRESS",
            Class::Secret => "SECRET",
            Class::Credentials => "CREDENTIALS",
            Class::DateOfBirth => "DATE_OF_BIRTH",
            Class::Address => "ADDRESS",
            Class::Person => "PERSON",
            Class::UserId => "USER_ID",
        }
    }

    pub fn from_tag(t: &str) -> Option<Class> {
        Class::ALL.into_iter().find(|k| k.tag() == t)
    }

    /// Lower-case name used in reports (`distinct_counts`).
    pub fn name(self) -> &'static str {
        match self {
            Class::Email => "email",
            Class::Phone => "phone",
            Class::CreditCard => "credit_card",
            Class::Iban => "iban",
            Class::Ssn => "ssn",
            Class::IpAddress => "ip_address",
            Class::MacAddress => "mac_address",
            Class::Secret => "secret",
            Class::Credentials => "credentials",
            Class::DateOfBirth => "date_of_birth",
            Class::Address => "address",
            Class::Person => "person",
            Class::UserId => "user_id",
        }
    }
}

/// What exactly was found. Several details share one [`Class`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Detail {
    Email,
    Phone,
    CreditCard,
    Iban,
    Ssn,
    IpAddress,
    MacAddress,
    SecretAws,
    SecretGithub,
    SecretOpenai,
    SecretAnthropic,
    SecretSlack,
    SecretGoogle,
    SecretStripe,
    SecretHuggingface,
    SecretGitlab,
    SecretJwt,
    SecretPrivateKey,
    SecretGeneric,
    SecretUrlToken,
    UrlCredentials,
    DateOfBirth,
    Address,
    Person,
    UserId,
}

impl Detail {
    pub fn class(self) -> Class {
        use Detail::*;
        match self {
            Email => Class::Email,
            Phone => Class::Phone,
            CreditCard => Class::CreditCard,
            Iban => Class::Iban,
            Ssn => Class::Ssn,
            IpAddress => Class::IpAddress,
            MacAddress => Class::MacAddress,
            SecretAws | SecretGithub | SecretOpenai | SecretAnthropic | SecretSlack
            | SecretGoogle | SecretStripe | SecretHuggingface | SecretGitlab | SecretJwt
            | SecretPrivateKey | SecretGeneric | SecretUrlToken => Class::Secret,
            UrlCredentials => Class::Credentials,
            DateOfBirth => Class::DateOfBirth,
            Address => Class::Address,
            Person => Class::Person,
            UserId => Class::UserId,
        }
    }

    /// Name in `RedactStats::by_kind`.
    pub fn stat_name(self) -> &'static str {
        use Detail::*;
        match self {
            Email => "email",
            Phone => "phone",
            CreditCard => "credit_card",
            Iban => "iban",
            Ssn => "ssn",
            IpAddress => "ip_address",
            MacAddress => "mac_address",
            SecretAws => "secret_aws",
            SecretGithub => "secret_github",
            SecretOpenai => "secret_openai",
            SecretAnthropic => "secret_anthropic",
            SecretSlack => "secret_slack",
            SecretGoogle => "secret_google",
            SecretStripe => "secret_stripe",
            SecretHuggingface => "secret_huggingface",
            SecretGitlab => "secret_gitlab",
            SecretJwt => "secret_jwt",
            SecretPrivateKey => "secret_private_key",
            SecretGeneric => "secret_generic",
            SecretUrlToken => "secret_url_token",
            UrlCredentials => "url_credentials",
            DateOfBirth => "date_of_birth",
            Address => "address",
            Person => "person",
            UserId => "user_id",
        }
    }

    /// Overlap resolution: when two findings overlap, the lower number wins.
    /// Checksummed and prefixed kinds beat loose shapes; names come last.
    pub fn priority(self) -> u8 {
        use Detail::*;
        match self {
            SecretPrivateKey => 0,
            SecretAws | SecretGithub | SecretOpenai | SecretAnthropic | SecretSlack
            | SecretGoogle | SecretStripe | SecretHuggingface | SecretGitlab | SecretJwt => 1,
            UrlCredentials | SecretUrlToken => 2,
            Email => 3,
            Iban => 4,
            CreditCard => 5,
            Ssn => 6,
            SecretGeneric => 7,
            IpAddress | MacAddress => 8,
            DateOfBirth => 9,
            Phone => 10,
            Address => 11,
            UserId => 12,
            Person => 13,
        }
    }
}

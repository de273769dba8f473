//! Topic permission bits (RocketMQ's `PermName`).

/// The topic's queues are preferred by the broker (not a valid `perm` value).
pub const PRIORITY: i32 = 8;
/// Consumers may read from the topic.
pub const READ: i32 = 4;
/// Producers may write to the topic.
pub const WRITE: i32 = 2;
/// New topics created automatically inherit this topic's config (`TBW102`).
pub const INHERIT: i32 = 1;

/// RocketMQ's default: readable and writable.
pub const DEFAULT: i32 = READ | WRITE;
/// Largest valid `perm`: RocketMQ's `PermName.isValid` accepts `0..PRIORITY`.
pub const MAX: i32 = PRIORITY - 1;

/// Renders `perm` the way RocketMQ's `perm2String` does: `RW-`, `R--`, `RWX`.
pub fn to_rwx(perm: i32) -> String {
    let bit = |mask: i32, c: char| if perm & mask == mask { c } else { '-' };
    [bit(READ, 'R'), bit(WRITE, 'W'), bit(INHERIT, 'X')]
        .iter()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perm_renders_like_rocketmq() {
        assert_eq!(to_rwx(DEFAULT), "RW-");
        assert_eq!(to_rwx(READ | WRITE | INHERIT), "RWX");
        assert_eq!(to_rwx(0), "---");
    }
}

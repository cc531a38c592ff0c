//! The operation table: every route of the box API and of the Notification Channel API,
//! its method, its path pattern (relative to its family's prefix, [`BOX_SCOPE`] or
//! [`NC_SCOPE`]) and the scope it needs (NMS Appendix G). The HTTP route table is generated
//! from [`Operation::ALL`], so no route can escape authorisation.

/// Path prefix of every box resource.
pub const BOX_SCOPE: &str = "/nms/v1/{store}/{box}";

/// Path prefix of the Notification Channel resources.
pub const NC_SCOPE: &str = "/notificationchannel/v1/{userId}";

/// The resource family an operation belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// Below `/nms/v1/{store}/{box}`: acts on one box.
    Box,
    /// Below `/notificationchannel/v1/{userId}`: acts on a user's notification channels.
    Channel,
}

/// OAuth scopes of NMS (Appendix G).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    Create,
    Read,
    Modify,
    Subscription,
    /// `oma_rest_nms.all_v1`: the union of the others.
    All,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Create => "oma_rest_nms.create",
            Scope::Read => "oma_rest_nms.read",
            Scope::Modify => "oma_rest_nms.modify",
            Scope::Subscription => "oma_rest_nms.subscription",
            Scope::All => "oma_rest_nms.all_v1",
        }
    }

    /// The scope an OAuth scope token names; `None` for tokens that are not NMS scopes.
    pub fn parse(s: &str) -> Option<Scope> {
        [Scope::Create, Scope::Read, Scope::Modify, Scope::Subscription, Scope::All]
            .into_iter()
            .find(|x| x.as_str() == s)
    }
}

macro_rules! operations {
    ($($variant:ident => ($method:literal, $path:literal, $scope:ident),)*) => {
        /// One operation of the box API or the Notification Channel API.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum Operation { $($variant,)* }

        impl Operation {
            /// Every operation, in route-registration order.
            pub const ALL: &'static [Operation] = &[$(Operation::$variant,)*];

            /// HTTP method.
            pub fn method(self) -> &'static str {
                match self { $(Operation::$variant => $method,)* }
            }

            /// Path pattern below the family's prefix.
            pub fn path(self) -> &'static str {
                match self { $(Operation::$variant => $path,)* }
            }

            /// Scope the operation requires.
            pub fn scope(self) -> Scope {
                match self { $(Operation::$variant => Scope::$scope,)* }
            }

            /// Name used in logs and metrics.
            pub fn name(self) -> &'static str {
                match self { $(Operation::$variant => stringify!($variant),)* }
            }
        }
    };
}

operations! {
    ObjectPathToIdGet => ("GET", "/objects/operations/pathToId", Read),
    ObjectPathToIdPost => ("POST", "/objects/operations/pathToId", Read),
    ObjectSearch => ("POST", "/objects/operations/search", Read),
    ObjectBulkCreation => ("POST", "/objects/operations/bulkCreation", Create),
    ObjectBulkUpdate => ("POST", "/objects/operations/bulkUpdate", Modify),
    ObjectBulkUpdateDelete => ("DELETE", "/objects/operations/bulkUpdate", Modify),
    ObjectBulkDelete => ("DELETE", "/objects/operations/bulkDelete", Modify),
    ObjectBulkDeletePost => ("POST", "/objects/operations/bulkDelete", Modify),
    ObjectCreate => ("POST", "/objects", Create),
    ObjectGet => ("GET", "/objects/{objectId}", Read),
    ObjectDelete => ("DELETE", "/objects/{objectId}", Modify),
    ObjectFlagsGet => ("GET", "/objects/{objectId}/flags", Read),
    ObjectFlagsPut => ("PUT", "/objects/{objectId}/flags", Modify),
    ObjectFlagGet => ("GET", "/objects/{objectId}/flags/{flagName}", Read),
    ObjectFlagPut => ("PUT", "/objects/{objectId}/flags/{flagName}", Modify),
    ObjectFlagDelete => ("DELETE", "/objects/{objectId}/flags/{flagName}", Modify),
    ObjectPayloadGet => ("GET", "/objects/{objectId}/payload", Read),
    ObjectPayloadPartGet => ("GET", "/objects/{objectId}/payloadParts/{partId}", Read),
    FolderPathToIdGet => ("GET", "/folders/operations/pathToId", Read),
    FolderPathToIdPost => ("POST", "/folders/operations/pathToId", Read),
    FolderSearch => ("POST", "/folders/operations/search", Read),
    FolderCopy => ("POST", "/folders/operations/copyToFolder", Modify),
    FolderMove => ("POST", "/folders/operations/moveToFolder", Modify),
    FolderCreate => ("POST", "/folders", Modify),
    FolderGet => ("GET", "/folders/{folderId}", Read),
    FolderDelete => ("DELETE", "/folders/{folderId}", Modify),
    FolderNameGet => ("GET", "/folders/{folderId}/folderName", Read),
    FolderNamePut => ("PUT", "/folders/{folderId}/folderName", Modify),
    FolderFlagsGet => ("GET", "/folders/{folderId}/flags", Read),
    FolderFlagsPut => ("PUT", "/folders/{folderId}/flags", Modify),
    FolderFlagGet => ("GET", "/folders/{folderId}/flags/{flagName}", Read),
    FolderFlagPut => ("PUT", "/folders/{folderId}/flags/{flagName}", Modify),
    FolderFlagDelete => ("DELETE", "/folders/{folderId}/flags/{flagName}", Modify),
    SubscriptionList => ("GET", "/subscriptions", Subscription),
    SubscriptionCreate => ("POST", "/subscriptions", Subscription),
    SubscriptionGet => ("GET", "/subscriptions/{subscriptionId}", Subscription),
    SubscriptionUpdate => ("POST", "/subscriptions/{subscriptionId}", Subscription),
    SubscriptionDelete => ("DELETE", "/subscriptions/{subscriptionId}", Subscription),
    // Administration (service accounts only): empty the box and change its validity.
    BoxReset => ("POST", "/operations/resetBox", Modify),
    // The Notification Channel API: channels carry subscriptions' notifications, so they
    // need the same scope.
    ChannelList => ("GET", "/channels", Subscription),
    ChannelCreate => ("POST", "/channels", Subscription),
    ChannelGet => ("GET", "/channels/{channelId}", Subscription),
    ChannelDelete => ("DELETE", "/channels/{channelId}", Subscription),
    ChannelLifetimeGet => ("GET", "/channels/{channelId}/channelLifetime", Subscription),
    ChannelLifetimePut => ("PUT", "/channels/{channelId}/channelLifetime", Subscription),
    ChannelPoll => ("POST", "/channels/{channelId}/poll", Subscription),
}

impl Operation {
    /// The family of resources the operation acts on.
    pub fn family(self) -> Family {
        match self {
            Operation::ChannelList
            | Operation::ChannelCreate
            | Operation::ChannelGet
            | Operation::ChannelDelete
            | Operation::ChannelLifetimeGet
            | Operation::ChannelLifetimePut
            | Operation::ChannelPoll => Family::Channel,
            _ => Family::Box,
        }
    }

    /// The path prefix of the operation's family.
    pub fn prefix(self) -> &'static str {
        match self.family() {
            Family::Box => BOX_SCOPE,
            Family::Channel => NC_SCOPE,
        }
    }

    /// The whole route pattern (prefix and path).
    pub fn pattern(self) -> String {
        format!("{}{}", self.prefix(), self.path())
    }

    /// Whether a request without credentials may reach the operation: renewing a channel's
    /// lifetime, which deployed clients send without them (the unguessable channel id is
    /// then the capability).
    pub fn credentials_optional(self) -> bool {
        self == Operation::ChannelLifetimePut
    }

    /// Whether `pattern` is this operation's whole route pattern.
    fn is_at(self, pattern: &str) -> bool {
        pattern.strip_prefix(self.prefix()) == Some(self.path())
    }

    /// The operation a (method, whole route pattern) pair belongs to.
    pub fn resolve(method: &str, pattern: &str) -> Option<Operation> {
        Operation::ALL.iter().copied().find(|op| op.method() == method && op.is_at(pattern))
    }

    /// The methods allowed on a whole route pattern, for `Allow` headers.
    pub fn allowed_methods(pattern: &str) -> Vec<&'static str> {
        Operation::ALL.iter().filter(|op| op.is_at(pattern)).map(|op| op.method()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Appendix G: creation needs `create`, reads (including the POST lookups) `read`,
    /// every other change `modify`.
    #[test]
    fn scopes_follow_appendix_g() {
        assert_eq!(Operation::ObjectCreate.scope(), Scope::Create);
        assert_eq!(Operation::ObjectPathToIdPost.scope(), Scope::Read);
        assert_eq!(Operation::ObjectSearch.scope(), Scope::Read);
        assert_eq!(Operation::FolderSearch.scope(), Scope::Read);
        assert_eq!(Operation::ObjectBulkCreation.scope(), Scope::Create);
        assert_eq!(Operation::FolderCopy.scope(), Scope::Modify);
        assert_eq!(Operation::FolderMove.scope(), Scope::Modify);
        assert_eq!(Operation::FolderCreate.scope(), Scope::Modify);
        assert_eq!(Operation::ObjectFlagPut.scope(), Scope::Modify);
        for op in Operation::ALL {
            if op.path().starts_with("/subscriptions") || op.family() == Family::Channel {
                assert_eq!(op.scope(), Scope::Subscription, "{}", op.name());
            } else if op.method() == "GET" {
                assert_eq!(op.scope(), Scope::Read, "{}", op.name());
            }
        }
    }

    #[test]
    fn every_pair_resolves_to_itself() {
        for op in Operation::ALL {
            assert_eq!(Operation::resolve(op.method(), &op.pattern()), Some(*op));
        }
        assert_eq!(Operation::allowed_methods("/nms/v1/{store}/{box}/objects/{objectId}"), vec!["GET", "DELETE"]);
        assert_eq!(
            Operation::allowed_methods("/notificationchannel/v1/{userId}/channels/{channelId}"),
            vec!["GET", "DELETE"]
        );
    }
}

// MegatronCore

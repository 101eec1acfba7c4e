//! URL Pattern matchers (Mercure 1.0 `match_urlpattern`): to be written.

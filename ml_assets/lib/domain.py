"""The business's vocabulary: the values a user's plan, status and country, an event's type and
device, and a profile change's type may take. The demo source generates them, raw validation
accepts only them, the profile features constrain them and the model encodes them."""

PLAN_TIERS = ("free", "basic", "premium")
USER_STATUSES = ("active", "closed")
CHANGE_TYPES = ("signup", "plan_change", "country_change", "status_change")
EVENT_TYPES = ("login", "page_view", "add_to_cart", "purchase")
DEVICES = ("web", "ios", "android")
COUNTRIES = ("US", "GB", "DE", "FR", "IN", "BR", "CA", "AU", "ES", "NL")

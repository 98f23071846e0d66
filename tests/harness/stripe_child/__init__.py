"""The child process of `tests.harness.stripe_server.StripeTestServer`: a Stripe-compatible HTTP server.

localstripe 1.15.10 keeps its store, webhook registry and aiohttp `app` as module globals; this package patches its
resources (in the child process only, by `app._install()`) and adds what localstripe lacks, one module per resource
family:

- `core`: request context (Stripe-Account, Idempotency-Key, request id), state, Stripe-shaped errors, list helpers;
- `cards`: Stripe's test cards, bank accounts and their outcomes (pure data, importable without localstripe);
- `webhooks`: events and signed, ordered, retried deliveries;
- `payments`: payment methods, charges and PaymentIntents (declines, bank debits);
- `authentication`: 3-D Secure challenges (a local page and a control) for PaymentIntents and SetupIntents;
- `refunds`, `disputes`, `setup_intents`: those resources;
- `connect`: connected accounts and their onboarding, account links, transfers and reversals;
- `ledger`: balances as balance transactions, pending until `available_on`;
- `payouts`: payouts, automatic payout schedules and the test clock;
- `app`: middlewares, routes, `/_test/*` controls and `main()`.

See docs/stripe-test-server.md for what is mimicked.
"""

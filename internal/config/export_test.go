package config

// Validate and Warnings let the tests judge a typed Config directly; the
// extension itself gets both from Load.

func (c Config) Validate() error { return c.validate() }

func (c Config) Warnings() []string { return c.warnings() }

package source

// WithLoopbackAsPublic makes a registry on a loopback address count as a
// public one for the redirect rule, so that a test on 127.0.0.1 can show
// what a registry on the internet may not do.
func WithLoopbackAsPublic() Option {
	return func(o *options) error {
		o.loopbackPublic = true
		return nil
	}
}

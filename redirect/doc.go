// Package redirect is refgate's public edge: the fasthttp handler that turns
// a click on /r/{code} into a 302, the local link cache it reads, the bot
// filter, the client-IP rules and the batcher that carries click records to
// the store off the request path.
//
// The click path never waits on the store on a cache hit: it reads the
// cache, signs a token, writes headers, and hands a copy of the click to a
// bounded queue. When something behind it fails it still answers the 302 if
// it knows where to send the visitor, and counts the failure.
package redirect

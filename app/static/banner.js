// Runs only when JavaScript is on, which Tor Browser's Safest security level turns off. It does
// one thing: mark the page so the stylesheet reveals the banner asking for the Safest level.
document.documentElement.classList.add("js");

// Progressive enhancement only: every page works without script.
// A filter's select or checkbox applies at once (htmx swaps the list in, see records.html.j2).
document.addEventListener("change", function (event) {
  var field = event.target;
  if (field.form && field.form.classList.contains("filters") && (field.tagName === "SELECT" || field.type === "checkbox")) {
    field.form.requestSubmit();
  }
});

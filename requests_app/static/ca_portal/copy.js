// "Copy" buttons: <button class="copy" data-copy="element-id">Copy</button> copies that
// element's text; <button class="copy" data-copy-text="05:35:F2">Copy</button> copies the text.
document.addEventListener("click", function (event) {
  var button = event.target.closest("button[data-copy], button[data-copy-text]");
  if (!button || !navigator.clipboard) return;
  var text = button.dataset.copyText;
  if (text === undefined) {
    var source = document.getElementById(button.dataset.copy);
    if (!source) return;
    text = source.textContent;
  }
  navigator.clipboard.writeText(text).then(function () {
    var label = button.textContent;
    button.textContent = "Copied";
    setTimeout(function () { button.textContent = label; }, 1500);
  });
});

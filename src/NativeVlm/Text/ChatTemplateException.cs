namespace NativeVlm.Text;

/// <summary>
/// A chat template that cannot be parsed or rendered: a construct outside the supported Jinja subset,
/// a Python type error, or the template's own raise_exception. The message names the template and line
/// ("chat template (tokenizer_config.json) line 12: the filter 'wordwrap' is not supported").
/// </summary>
public sealed class ChatTemplateException(string templateName, int line, string detail)
    : Exception($"chat template ({templateName}) line {line}: {detail}")
{
    /// <summary>Where the template came from: a file name, or what the caller named it.</summary>
    public string TemplateName { get; } = templateName;

    /// <summary>1-based line of the template the fault is on.</summary>
    public int Line { get; } = line;

    public string Detail { get; } = detail;
}

using System.Text.Json;
using NativeVlm.Text.Jinja;

namespace NativeVlm.Text;

/// <summary>
/// A model's own chat template, rendered as transformers' apply_chat_template renders it (Jinja2 with
/// trim_blocks and lstrip_blocks, the tokenizer's special tokens as variables, raise_exception and a
/// json.dumps tojson) by NativeVlm's interpreter of the Jinja subset that the SmolVLM and Qwen3 templates
/// use: text, <c>{{ }}</c>, if/elif/else, for (loop.*, else, inline if), set (and namespace()), filters,
/// tests, Python str/dict methods, whitespace control. A construct outside it is a
/// <see cref="ChatTemplateException"/> naming the template line.
/// </summary>
public sealed class ChatTemplate
{
    /// <summary>Where transformers looks for a template, in the order it prefers them.</summary>
    public static readonly string[] FileNames = ["chat_template.jinja", "chat_template.json", "tokenizer_config.json"];

    private static readonly string[] SpecialTokenKeys =
        ["bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token", "additional_special_tokens"];

    private readonly List<Statement> _template;
    private readonly Dictionary<string, object?> _specialTokens;

    private ChatTemplate(string name, string text, Dictionary<string, object?> specialTokens)
    {
        Name = name;
        Text = text;
        _template = Parser.Parse(name, text);
        _specialTokens = specialTokens;
    }

    /// <summary>Where the template came from (a file name), as errors name it.</summary>
    public string Name { get; }

    /// <summary>The template's Jinja source.</summary>
    public string Text { get; }

    /// <summary>A template from its source text, without special-token variables.</summary>
    public static ChatTemplate Parse(string text, string name = "chat_template") => new(name, text, []);

    /// <summary>
    /// The template of a model folder: chat_template.jinja, else the processor's chat_template.json,
    /// else tokenizer_config.json's chat_template; the special tokens come from tokenizer_config.json.
    /// </summary>
    public static ChatTemplate Load(string directory)
    {
        string configPath = Path.Combine(directory, "tokenizer_config.json");
        using JsonDocument? config = File.Exists(configPath) ? ReadJson(configPath) : null;
        Dictionary<string, object?> specialTokens = config is null ? [] : ReadSpecialTokens(configPath, config.RootElement);

        string jinjaPath = Path.Combine(directory, FileNames[0]);
        if (File.Exists(jinjaPath))
        {
            return new ChatTemplate(FileNames[0], File.ReadAllText(jinjaPath), specialTokens);
        }
        string processorPath = Path.Combine(directory, FileNames[1]);
        if (File.Exists(processorPath))
        {
            using JsonDocument processor = ReadJson(processorPath);
            return new ChatTemplate(FileNames[1], TemplateField(processorPath, processor.RootElement), specialTokens);
        }
        if (config is not null && config.RootElement.TryGetProperty("chat_template", out _))
        {
            return new ChatTemplate(FileNames[2], TemplateField(configPath, config.RootElement), specialTokens);
        }
        throw new FileNotFoundException($"{directory}: no chat template (looked for {string.Join(", ", FileNames)} with a chat_template)");
    }

    /// <summary>
    /// The prompt text for <paramref name="messages"/>. <paramref name="variables"/> are the template's
    /// other arguments (enable_thinking ...): null, bool, int, long, double, string, lists, string-keyed
    /// dictionaries and JSON values.
    /// </summary>
    public string Render(IReadOnlyList<ChatMessage> messages, bool addGenerationPrompt = false, IReadOnlyDictionary<string, object?>? variables = null)
    {
        var context = new Dictionary<string, object?>(_specialTokens);
        foreach ((string key, object? value) in variables ?? new Dictionary<string, object?>())
        {
            context[key] = ToTemplateValue(value);
        }
        context["messages"] = messages.Select(MessageValue).ToList();
        context["add_generation_prompt"] = addGenerationPrompt;
        return Renderer.Render(Name, _template, context);
    }

    private static object? MessageValue(ChatMessage message) => new OrderedDictionary<string, object?>
    {
        ["role"] = message.Role,
        ["content"] = message.Parts is null
            ? message.Content
            : message.Parts.Select(part => (object?)(part.Text is null
                ? new OrderedDictionary<string, object?> { ["type"] = part.Type }
                : new OrderedDictionary<string, object?> { ["type"] = part.Type, ["text"] = part.Text })).ToList(),
    };

    /// <summary>A caller's value as the template's Python-like value (int → long, JSON → dict/list ...).</summary>
    private static object? ToTemplateValue(object? value) => value switch
    {
        null or bool or long or double or string => value,
        int i => (long)i,
        float f => (double)f,
        JsonElement json => FromJson(json),
        IReadOnlyDictionary<string, object?> dict => new OrderedDictionary<string, object?>(dict.Select(p => KeyValuePair.Create(p.Key, ToTemplateValue(p.Value)))),
        System.Collections.IEnumerable items => items.Cast<object?>().Select(ToTemplateValue).ToList(),
        _ => throw new ArgumentException($"a template variable cannot be a {value.GetType().Name}"),
    };

    private static object? FromJson(JsonElement json) => json.ValueKind switch
    {
        JsonValueKind.Null or JsonValueKind.Undefined => null,
        JsonValueKind.True => true,
        JsonValueKind.False => false,
        JsonValueKind.String => json.GetString(),
        JsonValueKind.Number => json.TryGetInt64(out long l) ? l : (object)json.GetDouble(),
        JsonValueKind.Array => json.EnumerateArray().Select(FromJson).ToList(),
        _ => new OrderedDictionary<string, object?>(json.EnumerateObject().Select(p => KeyValuePair.Create(p.Name, FromJson(p.Value)))),
    };

    private static JsonDocument ReadJson(string path)
    {
        try
        {
            return JsonDocument.Parse(File.ReadAllText(path));
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{path}: not valid JSON: {e.Message}");
        }
    }

    /// <summary>chat_template as a string, or transformers' list of named templates (the "default" one).</summary>
    private static string TemplateField(string path, JsonElement root)
    {
        JsonElement field = root.ValueKind == JsonValueKind.Object && root.TryGetProperty("chat_template", out JsonElement f)
            ? f
            : throw new InvalidDataException($"{path}: has no chat_template");
        if (field.ValueKind == JsonValueKind.String)
        {
            return field.GetString()!;
        }
        if (field.ValueKind == JsonValueKind.Array)
        {
            foreach (JsonElement named in field.EnumerateArray())
            {
                if (named.TryGetProperty("name", out JsonElement name) && name.GetString() == "default" && named.TryGetProperty("template", out JsonElement template))
                {
                    return template.GetString() ?? throw new InvalidDataException($"{path}: chat_template 'default' is not a string");
                }
            }
            throw new InvalidDataException($"{path}: chat_template is a list without a template named 'default'");
        }
        throw new InvalidDataException($"{path}: chat_template must be a string or a list of {{name, template}}, not {field.ValueKind}");
    }

    /// <summary>transformers passes special_tokens_map to the template: each token's text (a string, or an AddedToken's content).</summary>
    private static Dictionary<string, object?> ReadSpecialTokens(string path, JsonElement config)
    {
        static object? TokenText(string path, JsonElement token) => token.ValueKind switch
        {
            JsonValueKind.String => token.GetString(),
            JsonValueKind.Object when token.TryGetProperty("content", out JsonElement content) => content.GetString(),
            JsonValueKind.Array => token.EnumerateArray().Select(t => TokenText(path, t)).ToList(),
            _ => throw new InvalidDataException($"{path}: a special token is a {token.ValueKind}, not a string or {{content: ...}}"),
        };
        var tokens = new Dictionary<string, object?>();
        foreach (string key in SpecialTokenKeys)
        {
            if (config.ValueKind == JsonValueKind.Object && config.TryGetProperty(key, out JsonElement token) && token.ValueKind != JsonValueKind.Null)
            {
                tokens[key] = TokenText(path, token);
            }
        }
        return tokens;
    }
}

namespace NativeVlm.Stitching;

/// <summary>
/// The chat template of a stitched Qwen3 model: Qwen3's ChatML turns
/// (<c>&lt;|im_start|&gt;role\n … &lt;|im_end|&gt;\n</c>, the generation prompt <c>&lt;|im_start|&gt;assistant\n</c>)
/// with content either a string or a list of parts, as SmolVLM's processor passes it; an image part
/// becomes the image token once, which the processor then expands into the tiles
/// (<c>&lt;|vision_start|&gt;&lt;row_1_col_1&gt;&lt;|image_pad|&gt;…</c>) inside the user turn.
/// Qwen3's tool-call and thinking sections are left out: the stitched recipe trains captions and
/// instructions, and a template that a Jinja subset cannot render would stop every row.
/// </summary>
public static class StitchedChatTemplate
{
    /// <param name="imageToken">The string an image part renders as (the processor's image token).</param>
    public static string For(string imageToken)
    {
        if (imageToken.IndexOfAny(['\'', '\\']) >= 0)
        {
            throw new ArgumentException($"the image token {imageToken} holds a quote or a backslash, which the template's string literal cannot hold", nameof(imageToken));
        }
        return "{%- for message in messages %}"
            + "{{- '<|im_start|>' + message['role'] + '\\n' }}"
            + "{%- if message['content'] is string %}{{- message['content'] }}"
            + "{%- else %}{%- for part in message['content'] %}"
            + "{%- if part['type'] == 'image' %}{{- '" + imageToken + "' }}"
            + "{%- elif part['type'] == 'text' %}{{- part['text'] }}{%- endif %}"
            + "{%- endfor %}{%- endif %}"
            + "{{- '<|im_end|>\\n' }}"
            + "{%- endfor %}"
            + "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}";
    }
}
